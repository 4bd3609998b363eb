"""The IMAP command scripts sent to both Dovecot and hardmail (tests/integration/
test_dovecot_diff_imap.py). Each scenario runs for a fresh account, over implicit TLS and logged
in unless it says otherwise; ``expect`` is the tagged status a correct server gives (checked on
Dovecot alone, so the scripts themselves are known to be right).

Messages: the MIME corpus under tests/data/mime/ when it exists, plus the small fixed set under
tests/data/imap_diff/ (which the scenarios' SEARCH/SORT/THREAD expectations are written for).
"""

from __future__ import annotations

from pathlib import Path

from support.imap_diff import Auth, Cmd, Done, Idle, Raw, Scenario, Step, Wait

DATA = Path(__file__).resolve().parents[1] / "data"
OWN = sorted((DATA / "imap_diff").glob("*.eml"))
MIME_CORPUS = sorted((DATA / "mime").glob("*.eml"))
# INTERNALDATEs given at APPEND, one per message of OWN (SEARCH BEFORE/ON/SINCE use them)
DATES = ["02-Nov-2026 10:15:00 +0100", "02-Nov-2026 11:30:00 +0000", "03-Nov-2026 08:00:00 -0500",
         "04-Nov-2026 14:45:10 +0000", "05-Nov-2026 23:59:59 +0100", "02-Nov-2026 12:05:00 +0000"]
FLAGS = ["(\\Seen)", "(\\Seen \\Answered)", "()", "(\\Flagged $Forwarded)", "(\\Seen \\Flagged)", "(\\Draft)"]


def append(message: bytes, mailbox: str = "INBOX", flags: str = "", date: str = "", *, plus: bool = False,
           conn: int = 0, expect: str = "OK") -> Cmd:
    literal = f"{{{len(message)}{'+' if plus else ''}}}\r\n".encode()
    parts = ["APPEND", mailbox] + ([flags] if flags else []) + ([f'"{date}"'] if date else [])
    return Cmd(" ".join(parts).encode() + b" " + literal + message, conn=conn, expect=expect)


INBOX_SUBSCRIBED = ("new accounts have INBOX subscribed (clients that show only subscribed folders show it); "
                    "Dovecot subscribes only the special-use folders")


def own_messages(mailbox: str = "INBOX", conn: int = 0) -> list[Step]:
    """The six fixed messages, each with its flags and INTERNALDATE."""
    return [append(path.read_bytes(), mailbox, FLAGS[i], DATES[i], conn=conn) for i, path in enumerate(OWN)]


def corpus_messages() -> list[Step]:
    return [append(path.read_bytes()) for path in OWN + MIME_CORPUS]


def _s(name: str, *steps: Step, **options: object) -> Scenario:
    return Scenario(name, tuple(steps), **options)  # type: ignore[arg-type]


def C(text: str | bytes, expect: str = "OK", conn: int = 0) -> Cmd:
    return Cmd(text, conn=conn, expect=expect)


def _login() -> list[Scenario]:
    return [
        _s("login-plaintext-port-needs-tls", C("CAPABILITY"), C("LOGIN $USER $PASS", "NO"), C("STARTTLS"),
           C("CAPABILITY"), C("LOGIN $USER $PASS"), C("CAPABILITY"), C("LOGOUT"), port="imap", login=False,
           why="no AUTH= mechanism is offered before TLS (AUTH only inside TLS); Dovecot lists AUTH=SCRAM-SHA-256 "
               "beside LOGINDISABLED", differs=((0, "OK"),)),
        _s("login-wrong-password-and-unknown-user", C('LOGIN $USER "wrong password"', "NO"),
           C('LOGIN "nosuchuser@example.test" "whatever it is"', "NO"), C("LOGIN $USER $PASS"),
           C("LOGIN $USER $PASS", "BAD"), login=False),
        _s("login-literal-password", C(b"LOGIN $USER {4}\r\nnope", "NO"), C("LOGIN $USER $PASS"), login=False),
        _s("authenticate-plain", Auth("PLAIN", initial=True), C("CAPABILITY"), login=False),
        _s("authenticate-plain-continuation", Auth("PLAIN"), login=False),
        _s("authenticate-plain-wrong", Auth("PLAIN", initial=True, password="wrong password", expect="NO"),
           Auth("PLAIN", initial=True), login=False),
        _s("authenticate-scram-sha-256", Auth("SCRAM-SHA-256"), C("NOOP"), login=False),
        _s("authenticate-unknown-mechanism", C("AUTHENTICATE X-UNKNOWN", "NO"), login=False),
        _s("authenticate-plain-on-plaintext-port", Auth("PLAIN", initial=True, expect="NO"), C("STARTTLS"),
           Auth("PLAIN", initial=True), port="imap", login=False),
        _s("capability-after-login", C("CAPABILITY"), C("NOOP"), C("CHECK", "BAD"), C("LOGOUT")),
        _s("id-and-namespace", C('ID ("name" "diff-test" "version" "1")'), C("ID NIL"), C("NAMESPACE")),
    ]


def _folders() -> list[Scenario]:
    return [
        _s("list-basic", C('LIST "" "*"'), C('LIST "" "%"'), C('LIST "" ""'), C('LIST "" "INBOX"'),
           C('LIST "" "inbox"'), C('LSUB "" "*"'), C('LIST "" "Nope*"'),
           why=INBOX_SUBSCRIBED, differs=((5, "OK"),)),
        _s("list-extended", C("CREATE Work/Projects"), C('LIST (SPECIAL-USE) "" "*"'),
           C('LIST "" "*" RETURN (SPECIAL-USE)'), C('LIST (SUBSCRIBED) "" "*"'),
           C('LIST "" "*" RETURN (CHILDREN)'), C('LIST "" "%" RETURN (CHILDREN)'),
           C('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'), C('LIST "" ("INBOX" "Sent" "Work/*")'),
           C('LIST "" "Work/%"'), C('LIST "Work/" "%"'),
           why="CREATE Work/Projects also creates Work (RFC 9051 6.3.4 allows it; Dovecot's Maildir++ leaves it "
               "\\NonExistent), and " + INBOX_SUBSCRIBED,
           differs=((2, "OK"), (3, "OK"), (4, "OK"), (5, "OK"), (6, "OK"))),
        _s("list-status", *own_messages(), C("CREATE Empty"),
           C('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))'),
           C('LIST "" "INBOX" RETURN (STATUS (SIZE RECENT))')),
        _s("create-rename-delete", C("CREATE Work"), C("CREATE Work/Projects"), C("CREATE Work", "NO"),
           C('LIST "" "Work*"'), C("RENAME Work/Projects Work/Done"), C("RENAME Work Play"), C('LIST "" "*"'),
           C("RENAME Missing Other", "NO"), C("CREATE Other"), C("RENAME Play Other", "NO"), C("DELETE Play/Done"),
           C("DELETE Play"), C("DELETE INBOX", "NO"), C("DELETE Missing", "NO"), C('LIST "" "*"')),
        _s("create-names", C('CREATE "&AMk-t&AOk-"'), C('CREATE "Archive/2024"'), C('CREATE "With Space"'),
           C('CREATE "trailing/"'), C('LIST "" "*"'), C('STATUS "&AMk-t&AOk-" (MESSAGES)'),
           C('CREATE "a.b"', "NO"), C('CREATE "INBOX"', "NO"), C('CREATE "inbox/child"')),
        _s("create-special-use", C("CREATE MyArchive (USE (\\Archive))"), C('LIST (SPECIAL-USE) "" "*"'),
           why="RFC 6154 CREATE-SPECIAL-USE: hardmail keeps the use given at CREATE; Dovecot 2.3 drops it",
           differs=((1, "OK"),)),
        _s("subscribe", C("CREATE Work"), C("SUBSCRIBE Work"), C("UNSUBSCRIBE Sent"), C('LSUB "" "*"'),
           C('LIST (SUBSCRIBED) "" "*"'), C("SUBSCRIBE Missing", "NO"), C('LSUB "" "*"'), C("DELETE Work"),
           C('LSUB "" "*"'), C('LIST (SUBSCRIBED) "" "*"'),
           why=INBOX_SUBSCRIBED + "; and Dovecot's test set-up re-subscribes the special-use folders (auto = "
               "subscribe), so UNSUBSCRIBE Sent does not stick there",
           differs=((3, "OK"), (4, "OK"), (6, "OK"), (8, "OK"), (9, "OK"))),
        _s("rename-inbox", *own_messages()[:2], C("RENAME INBOX Old", "NO"), C("STATUS Old (MESSAGES UIDNEXT)", "NO"),
           C("STATUS INBOX (MESSAGES UIDNEXT)"), C("SELECT INBOX"),
           why="RFC 9051 6.3.6: renaming INBOX moves its messages into the new folder; Dovecot's Maildir++ "
               "refuses it", differs=((2, "OK"), (3, "OK"), (4, "OK"), (5, "OK"))),
        _s("status", *own_messages(), C("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"),
           C("STATUS INBOX (SIZE HIGHESTMODSEQ)"), C("STATUS Sent (MESSAGES UIDNEXT UNSEEN)"),
           C("STATUS Missing (MESSAGES)", "NO"), C("STATUS INBOX (NOSUCH)", "BAD")),
        _s("status-deleted", *own_messages()[:2], C("SELECT INBOX"), C("STORE 1 +FLAGS (\\Deleted)"),
           C("STATUS Sent (MESSAGES)"), C("STATUS INBOX (DELETED)", "BAD"),
           why="STATUS DELETED is IMAP4rev2 (RFC 9051 6.3.11); Dovecot 2.3 is IMAP4rev1 only",
           differs=((5, "OK"),)),
        _s("quota", C("GETQUOTAROOT INBOX"), *own_messages()[:2], C("GETQUOTAROOT INBOX"),
           C('SETQUOTA "" (STORAGE 10)', "NO")),
    ]


def _select() -> list[Scenario]:
    return [
        _s("select-examine", *own_messages(), C("SELECT INBOX"), C("EXAMINE INBOX"), C("SELECT Sent"),
           C("CLOSE"), C("SELECT Missing", "NO"), C("FETCH 1 FLAGS", "BAD"), C("SELECT inbox")),
        _s("examine-is-read-only", *own_messages()[:3], C("EXAMINE INBOX"), C("STORE 3 +FLAGS (\\Seen)"),
           C("FETCH 3 (BODY[TEXT])"), C("FETCH 3 FLAGS"), C("EXPUNGE"),
           why="RFC 9051 6.3.3: EXAMINE is read-only, so hardmail refuses STORE and EXPUNGE with NO "
               "([READ-ONLY]); Dovecot answers OK and changes nothing. Both leave the mailbox as it was.",
           differs=((4, "NO"), (7, "NO"))),
        # only modseqs of changes are compared: messages appended before may share one (Dovecot) or not
        _s("condstore", *own_messages()[:3], C("SELECT INBOX (CONDSTORE)"), C("STORE 1 +FLAGS (\\Flagged)"),
           C("FETCH 1:* (FLAGS) (CHANGEDSINCE $HIGHESTMODSEQ@1)"), C("STORE 2 (UNCHANGEDSINCE 0) +FLAGS (\\Deleted)"),
           C("STORE 2 (UNCHANGEDSINCE $HIGHESTMODSEQ@1) +FLAGS (\\Seen)"), C("STORE 3 +FLAGS.SILENT (\\Flagged)"),
           C("FETCH 1:* (FLAGS) (CHANGEDSINCE $HIGHESTMODSEQ@1)"), C("SEARCH MODSEQ $HIGHESTMODSEQ@1+1"),
           C("STATUS INBOX (HIGHESTMODSEQ)")),
        _s("qresync", C("ENABLE QRESYNC"), *own_messages()[:4], C("SELECT INBOX"), C("STORE 2 +FLAGS (\\Deleted)"),
           C("STORE 3 +FLAGS (\\Seen)"), C("EXPUNGE"), C("SELECT INBOX (QRESYNC ($UIDVALIDITY@1 $HIGHESTMODSEQ@1))"),
           C("UID FETCH 1:* (FLAGS) (CHANGEDSINCE $HIGHESTMODSEQ@1 VANISHED)"), C("SELECT INBOX (QRESYNC (1 1))")),
        _s("unselect-close", *own_messages()[:3], C("UNSELECT", "BAD"), C("SELECT INBOX"),
           C("STORE 1 +FLAGS (\\Deleted)"), C("UNSELECT"), C("SELECT INBOX"), C("FETCH 1 FLAGS"), C("CLOSE"),
           C("STATUS INBOX (MESSAGES)"), C("CLOSE", "BAD")),
        _s("enable", C("ENABLE CONDSTORE"), C("ENABLE QRESYNC"), C("ENABLE UTF8=ACCEPT"),
           C("ENABLE X-NO-SUCH"),
           why="UTF8=ACCEPT (RFC 6855, part of IMAP4rev2): hardmail enables it, Dovecot 2.3 does not know it",
           differs=((2, "OK"),)),
    ]


def _append() -> list[Scenario]:
    message = OWN[0].read_bytes()
    return [
        _s("append-variants", append(message), append(message, flags="(\\Seen \\Flagged $Forwarded)",
                                                      date="01-Jan-2020 00:00:00 +0000"),
           append(message, plus=True),
           append(message, flags="(\\Answered)", date="31-Dec-2025 23:59:59 -0800", plus=True),
           append(message, "Missing", expect="NO"), append(message, "Sent"), C("SELECT INBOX"),
           C("FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE UID)"), C("STATUS Sent (MESSAGES UIDNEXT)")),
        _s("append-bad", append(message, flags="(\\Recent)", expect="BAD"), append(b"", expect="NO"),
           Cmd(b'APPEND INBOX "not a date" {3}\r\nabc', expect="BAD"), C("STATUS INBOX (MESSAGES)")),
        _s("append-8bit-and-crlf", append(OWN[4].read_bytes()), append(b"Subject: bare\r\n\r\nno from"),
           C("SELECT INBOX"), C("FETCH 1:* (RFC822.SIZE BODY.PEEK[])")),
    ]


def _fetch() -> list[Scenario]:
    sections = ["BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[HEADER.FIELDS (From Subject)]",
                "BODY.PEEK[HEADER.FIELDS.NOT (Received Message-ID)]", "BODY.PEEK[TEXT]", "BODY.PEEK[1]",
                "BODY.PEEK[1.2]<0.10>", "BODY.PEEK[2.MIME]", "BODY.PEEK[3.HEADER]", "BODY.PEEK[3.TEXT]",
                "BODY.PEEK[3.1]", "BODY.PEEK[1.1]<5.20>", "BODY.PEEK[]<0.40>", "BODY.PEEK[99]",
                "RFC822.HEADER", "BINARY.PEEK[2]", "BINARY.SIZE[2]", "BINARY.PEEK[1.1]", "BINARY.PEEK[]<0.20>"]
    return [
        _s("fetch-structure", *corpus_messages(), C("SELECT INBOX"), C("FETCH 1:* (ENVELOPE)"),
           C("FETCH 1:* (BODYSTRUCTURE)"), C("FETCH 1:* (BODY)"), C("FETCH 1:* (UID RFC822.SIZE FLAGS)")),
        _s("fetch-sections", *own_messages(), C("SELECT INBOX"),
           *[C(f"FETCH 4 ({section})") for section in sections],
           C("FETCH 3 (BODY.PEEK[1] BODY.PEEK[2] BINARY.PEEK[2])"),
           C("FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1])"), C("FETCH 5 (BODY.PEEK[HEADER.FIELDS (Subject From)])")),
        _s("fetch-sets-seen", *own_messages(), C("SELECT INBOX"), C("FETCH 3 (BODY[]<5.20>)"), C("FETCH 3 FLAGS"),
           C("FETCH 6 RFC822.TEXT"), C("FETCH 6 FLAGS"), C("FETCH 4 (BINARY[1.1])"), C("FETCH 4 FLAGS")),
        _s("fetch-macros", *own_messages(), C("SELECT INBOX"), C("FETCH 1:* ALL"), C("FETCH 1:* FAST"),
           C("FETCH 2:3 FULL"), C("UID FETCH 2:* (FLAGS)"), C("UID FETCH 99 (FLAGS)"), C("FETCH 1 RFC822")),
        _s("fetch-bad", *own_messages()[:2], C("SELECT INBOX"), C("FETCH 1 (NOSUCH)", "BAD"), C("FETCH 9 FLAGS", "BAD"),
           C("FETCH abc FLAGS", "BAD"), C("FETCH 1 BODY[1.2.", "BAD"), C("UID FETCH 1:* FLAGS")),
    ]


def _store() -> list[Scenario]:
    return [
        _s("store", *own_messages(), C("SELECT INBOX"), C("STORE 1 +FLAGS (\\Seen)"),
           C("STORE 1:2 +FLAGS.SILENT (\\Flagged)"), C("STORE 2 -FLAGS (\\Seen)"),
           C("STORE 3 FLAGS ($Label1 \\Answered)"), C("UID STORE 1:* +FLAGS (\\Draft)"),
           C("STORE 4 -FLAGS.SILENT ($Forwarded)"), C("FETCH 1:* FLAGS"), C("STORE 9 +FLAGS (\\Seen)", "BAD"),
           C("STORE 1 +FLAGS (\\Recent)", "BAD"), C("STORE 1 +FLAGS (\\Seen", "BAD"),
           C("STORE 1 NOSUCH (\\Seen)", "BAD")),
        _s("store-keywords", *own_messages()[:2], C("SELECT INBOX"), C("STORE 1 +FLAGS ($Junk NonJunk Custom_1)"),
           C("FETCH 1 FLAGS"), C("STORE 1 -FLAGS (custom_1)"), C("FETCH 1 FLAGS")),
    ]


def _search() -> list[Scenario]:
    keys = ["ALL", "SEEN", "UNSEEN", "FLAGGED", "UNFLAGGED", "ANSWERED", "UNANSWERED", "DELETED", "UNDELETED",
            "DRAFT", "UNDRAFT", "KEYWORD $Forwarded", "UNKEYWORD $Forwarded", "NEW", "OLD", "RECENT",
            'FROM "bob"', "TO alice", "CC carol", "BCC nobody", "SUBJECT lunch", "BODY noon", 'TEXT "usual place"',
            "HEADER Message-ID lunch-2", 'HEADER "In-Reply-To" ""', "LARGER 1000", "SMALLER 400",
            "BEFORE 3-Nov-2026", "ON 2-Nov-2026", "SINCE 4-Nov-2026", "SENTBEFORE 3-Nov-2026", "SENTON 2-Nov-2026",
            "SENTSINCE 4-Nov-2026", "UID 2:4", "2:3", "1,3,5:*", "NOT SEEN", "OR SEEN FLAGGED", "(SEEN FLAGGED)",
            "NOT (OR DRAFT ANSWERED)", "OR OR FROM carol FROM bob SUBJECT Fwd", "*", "SUBJECT \"\"", "TEXT report",
            "BODY numbers", "SUBJECT newsletter", 'FROM "Renée"', "HEADER Content-Type multipart"]
    utf8 = ["SUBJECT \"Grüße\"", "BODY \"école\"", "FROM \"Müller\"", "TEXT \"café\"", "SUBJECT \"école d'été\"",
            "FROM \"groß\""]
    return [
        _s("search", *own_messages(), C("SELECT INBOX"), *[C(f"SEARCH {key}") for key in keys],
           *[C(f"UID SEARCH {key}") for key in keys[:6]], C("SEARCH NOSUCHKEY", "BAD"), C("SEARCH (SEEN", "BAD")),
        _s("search-charset", *own_messages(), C("SELECT INBOX"),
           *[Cmd(b"SEARCH CHARSET UTF-8 " + _literal_key(key)) for key in utf8],
           C("SEARCH CHARSET US-ASCII SUBJECT lunch"), C("SEARCH CHARSET X-NO-SUCH-CHARSET SUBJECT lunch", "NO")),
        _s("esearch", *own_messages(), C("SELECT INBOX"), C("SEARCH RETURN (MIN MAX COUNT ALL) SEEN"),
           C("UID SEARCH RETURN () ALL"), C("SEARCH RETURN (COUNT) UNSEEN"), C("SEARCH RETURN (MIN) DRAFT"),
           C("SEARCH RETURN (ALL) KEYWORD nosuch"), C("UID SEARCH RETURN (MAX COUNT) SUBJECT lunch"),
           C("SEARCH RETURN (NOSUCH) ALL", "BAD")),
        _s("sort", *own_messages(), C("SELECT INBOX"), *[C(f"SORT ({key}) UTF-8 ALL") for key in (
            "SUBJECT", "REVERSE DATE", "FROM", "SIZE", "ARRIVAL", "CC", "TO", "DISPLAYFROM", "DISPLAYTO",
            "REVERSE SUBJECT DATE", "REVERSE ARRIVAL")], C("UID SORT (DATE) UTF-8 SEEN"),
           C("SORT (NOSUCH) UTF-8 ALL", "BAD")),
        _s("thread", *own_messages(), C("SELECT INBOX"), C("THREAD REFERENCES UTF-8 ALL"),
           C("THREAD ORDEREDSUBJECT UTF-8 ALL"), C("UID THREAD REFERENCES UTF-8 ALL"),
           C("THREAD REFERENCES UTF-8 SEEN"), C("THREAD NOSUCH UTF-8 ALL", "BAD")),
    ]


def _literal_key(key: str) -> bytes:
    name, _, value = key.partition(" ")
    raw = value.strip('"').encode()
    return f"{name} {{{len(raw)}}}\r\n".encode() + raw


def _move() -> list[Scenario]:
    return [
        _s("copy-move", C("CREATE Work"), *own_messages(), C("SELECT INBOX"), C("COPY 1:2 Work"), C("UID COPY 3 Work"),
           C("MOVE 1 Work"), C("UID MOVE 5 Work"), C("COPY 1 Missing", "NO"), C("MOVE 1 Missing", "NO"),
           C("FETCH 1:* (UID FLAGS)"), C("STATUS Work (MESSAGES UIDNEXT)"), C("SELECT Work"),
           C("FETCH 1:* (UID FLAGS)")),
        _s("expunge", *own_messages(), C("SELECT INBOX"), C("STORE 1:2 +FLAGS (\\Deleted)"), C("UID EXPUNGE 2"),
           C("FETCH 1:* (UID)"), C("EXPUNGE"), C("FETCH 1:* (UID)"), C("UID EXPUNGE 1:*"),
           C("STORE 1 +FLAGS (\\Deleted)"), C("UID STORE 6 +FLAGS (\\Deleted)"), C("UID EXPUNGE 4:6"),
           C("FETCH 1:* (UID FLAGS)")),
        _s("two-sessions", C("SELECT INBOX", conn=1), *own_messages()[:2], C("NOOP", conn=1),
           C("SELECT INBOX"), C("STORE 1 +FLAGS (\\Flagged)"), C("NOOP", conn=1), C("STORE 2 +FLAGS (\\Deleted)"),
           C("EXPUNGE"), C("FETCH 1:* (FLAGS)", conn=1), C("NOOP", conn=1), connections=2,
           why="while an expunge is held back from a session in FETCH (RFC 9051 7.5.1), hardmail reports the "
               "message with the flags that session last saw; Dovecot adds the \\Deleted set before (twice)",
           differs=((9, "OK"),)),
        _s("idle", C("SELECT INBOX", conn=1), Idle(1), *own_messages()[:1], Wait(1, rb"EXISTS"), Done(1),
           C("SELECT INBOX"), Idle(1), C("STORE 1 +FLAGS (\\Flagged)"), Wait(1, rb"FETCH"), Done(1),
           C("NOOP", conn=1), connections=2),
    ]


def _bad_syntax() -> list[Scenario]:
    return [
        _s("bad-syntax", C("NOSUCHCOMMAND", "BAD"), C("FETCH 1 FLAGS", "BAD"), C('SELECT "unterminated', "BAD"),
           C("SELECT", "BAD"), C("LIST", "BAD"), C('LIST "" "*" RETURN (NOSUCH)', "BAD"),
           C("CREATE", "BAD"), C("STATUS INBOX", "BAD"), Raw(b"*\r\n"), Raw(b"+ NOOP\r\n"),
           Raw(b"tag-only\r\n"), C("noop"), C("lIsT \"\" \"INBOX\"")),
        # Dovecot disconnects after the third bad command before login: two here
        _s("bad-before-login", C("SELECT INBOX", "BAD"), C("NOOP"), C("CAPABILITY"), C("LOGIN onlyone", "BAD"),
           C("LOGIN $USER $PASS"), login=False),
    ]


def scenarios() -> list[Scenario]:
    return _login() + _folders() + _select() + _append() + _fetch() + _store() + _search() + _move() + _bad_syntax()
