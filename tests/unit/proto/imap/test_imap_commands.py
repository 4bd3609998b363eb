"""Every IMAP command's arguments (RFC 9051 6 with the extensions), parsed whole and byte by byte."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.commands import FetchItem, Section
from hardmail.proto.imap.sequence import STAR, SequenceSet
from hardmail.proto.imap.state import ConnState

from .conftest import parse_one

NA, AUTH, SEL = ConnState.NOT_AUTHENTICATED, ConnState.AUTHENTICATED, ConnState.SELECTED


def p(line: str | bytes, state: ConnState = SEL, enabled: tuple[str, ...] = ()) -> c.Event:
    data = line.encode() if isinstance(line, str) else line
    return parse_one(data + b"\r\n", state, enabled)


def bad(line: str | bytes, state: ConnState = SEL, enabled: tuple[str, ...] = ()) -> c.BadCommand:
    event = p(line, state, enabled)
    assert isinstance(event, c.BadCommand), event
    return event


# ----- any state / not authenticated ------------------------------------------------------------
@pytest.mark.parametrize(("line", "event"), [
    ("a CAPABILITY", c.Capability("a")), ("a NOOP", c.Noop("a")), ("a LOGOUT", c.Logout("a")),
    ("a STARTTLS", c.StartTls("a")),
])
def test_commands_without_arguments(line: str, event: c.Event) -> None:
    assert p(line, NA) == event
    assert bad(line + " x", NA).text == "Unexpected extra arguments"


@pytest.mark.parametrize(("line", "user", "password"), [
    ("a LOGIN fred secret", "fred", "secret"),
    ('a LOGIN "fred smith" "p\\"w\\\\d"', "fred smith", 'p"w\\d'),
    ("a LOGIN fred] x]y", "fred]", "x]y"),  # ASTRING-CHAR includes "]"
    ('a LOGIN "j\xc3\xb6rg" "\xc3\xa9"', "jörg", "é"),
])
def test_login(line: str, user: str, password: str) -> None:
    assert p(line.encode("latin-1"), NA) == c.Login("a", user, password)


@pytest.mark.parametrize("line", ["a LOGIN", "a LOGIN fred", "a LOGIN fred  pw", 'a LOGIN "fred pw',
                                  'a LOGIN "a\\b" pw', "a LOGIN fr(ed pw", "a LOGIN fred pw x",
                                  "a LOGIN fr%d pw", "a LOGIN fr*d pw", 'a LOGIN "\xff" pw'])
def test_bad_login(line: str) -> None:
    bad(line.encode("latin-1"), NA)


def test_login_password_not_in_repr() -> None:
    assert "secret" not in repr(p("a LOGIN fred secret", NA))
    assert "AHU" not in repr(p("a AUTHENTICATE PLAIN AHUAcA==", NA))


def test_id() -> None:
    assert p('a ID ("name" "mutt" "version" NIL)', NA) == c.Id("a", (("name", "mutt"), ("version", None)))
    assert p("a ID NIL", AUTH) == c.Id("a", None)
    assert p("a ID ()", SEL) == c.Id("a", ())
    bad('a ID ("name")', NA)
    bad("a ID (" + " ".join(f'"k{i}" "v"' for i in range(31)) + ")", NA)


# ----- authenticated ------------------------------------------------------------------------------------
def test_select_and_examine() -> None:
    assert p("a SELECT inbox", AUTH) == c.Select("a", "INBOX")
    assert p('a EXAMINE "Archive/2024"', AUTH) == c.Examine("a", "Archive/2024")
    assert p("a EXAMINE x", AUTH).readonly and not p("a SELECT x", AUTH).readonly  # type: ignore[attr-defined]
    assert p("a SELECT INBOX (CONDSTORE)", AUTH) == c.Select("a", "INBOX", condstore=True)
    assert p("a SELECT INBOX.sub", AUTH) == c.Select("a", "INBOX.sub")
    assert p("a SELECT Entw&APw-rfe", AUTH) == c.Select("a", "Entwürfe")
    bad("a SELECT INBOX (FOO)", AUTH)
    bad("a SELECT INBOX ()", AUTH)
    assert bad("a SELECT R&D", AUTH).status == "NO"  # a valid astring, not a valid name (as Dovecot)
    bad("a SELECT", AUTH)


def test_select_qresync() -> None:
    q = ("QRESYNC",)
    assert p("a SELECT INBOX (QRESYNC (67890007 20050715194045000))", AUTH, q) == c.Select(
        "a", "INBOX", qresync=c.QresyncParams(67890007, 20050715194045000))
    assert p("a SELECT INBOX (QRESYNC (67890007 90060115194045000 41,43:211,214:541))", AUTH, q) == c.Select(
        "a", "INBOX", qresync=c.QresyncParams(67890007, 90060115194045000,
                                              SequenceSet(((41, 41), (43, 211), (214, 541)))))
    event = p("a SELECT INBOX (CONDSTORE QRESYNC (1 2 1:9 (1,5 3,20)))", AUTH, q)
    assert isinstance(event, c.Select) and event.condstore and event.qresync == c.QresyncParams(
        1, 2, SequenceSet(((1, 9),)), SequenceSet(((1, 1), (5, 5))), SequenceSet(((3, 3), (20, 20))))
    assert p("a SELECT INBOX (QRESYNC (1 2 (1 3)))", AUTH, q) == c.Select(
        "a", "INBOX", qresync=c.QresyncParams(1, 2, None, SequenceSet.of(1), SequenceSet.of(3)))
    assert "not enabled" in bad("a SELECT INBOX (QRESYNC (1 2))", AUTH).text  # RFC 7162 3.2.5
    assert p("a SELECT INBOX (QRESYNC (0 0))", AUTH, q) == c.Select("a", "INBOX", qresync=c.QresyncParams(0, 0))
    bad("a SELECT INBOX (QRESYNC (1 2 1:*))", AUTH, q)
    bad("a SELECT INBOX (QRESYNC (1))", AUTH, q)


def test_enable_parses_capabilities() -> None:
    event = p("a ENABLE CONDSTORE x-foo", AUTH)
    assert isinstance(event, c.Enable) and event.caps == ("CONDSTORE", "X-FOO")
    assert isinstance(bad("a ENABLE", AUTH), c.BadCommand)


def test_create_with_special_use() -> None:
    assert p("a CREATE foo/bar", AUTH) == c.Create("a", "foo/bar")
    assert p("a CREATE MySent (USE (\\Sent))", AUTH) == c.Create("a", "MySent", ("\\Sent",))
    assert p("a CREATE x (USE (\\junk \\Archive))", AUTH) == c.Create("a", "x", ("\\Junk", "\\Archive"))
    event = bad("a CREATE x (USE (\\Nope))", AUTH)
    assert (event.status, event.code) == ("NO", "USEATTR")
    bad("a CREATE x (FOO (\\Sent))", AUTH)


@pytest.mark.parametrize(("verb", "cls"), [("DELETE", c.Delete), ("SUBSCRIBE", c.Subscribe),
                                           ("UNSUBSCRIBE", c.Unsubscribe), ("GETQUOTAROOT", c.GetQuotaRoot)])
def test_one_mailbox_commands(verb: str, cls: type) -> None:
    assert p(f'a {verb} "T&AOk-l&AOk-"', AUTH) == cls("a", "Télé")
    assert p(f"a {verb} {{3+}}\r\nabc", AUTH) == cls("a", "abc")
    bad(f"a {verb}", AUTH)
    bad(f"a {verb} a b", AUTH)


def test_rename() -> None:
    assert p("a RENAME old new", AUTH) == c.Rename("a", "old", "new")
    assert p("a RENAME INBOX Old-inbox", AUTH) == c.Rename("a", "INBOX", "Old-inbox")
    bad("a RENAME old", AUTH)


def test_mailbox_names_in_utf8_mode() -> None:
    assert p('a SELECT "\xc3\xa9t\xc3\xa9"'.encode("latin-1"), AUTH, ("UTF8=ACCEPT",)) == c.Select("a", "été")
    assert p("a SELECT R&D", AUTH, ("UTF8=ACCEPT",)) == c.Select("a", "R&D")
    assert p('a SELECT "\xc3\xa9"'.encode("latin-1"), AUTH) == c.Select("a", "é")  # lenient: valid UTF-8
    bad('a SELECT "\xe9"'.encode("latin-1"), AUTH, ("UTF8=ACCEPT",))
    bad("a SELECT \xc3\xa9".encode("latin-1"), AUTH, ("UTF8=ACCEPT",))  # 8-bit is not an atom


def test_list_basic_and_patterns() -> None:
    assert p('a LIST "" *', AUTH) == c.List("a", "", ("*",))
    assert p("a LIST ~/Mail/ %", AUTH) == c.List("a", "~/Mail/", ("%",))
    assert p('a LIST "" INBOX/*]', AUTH) == c.List("a", "", ("INBOX/*]",))
    assert p('a LIST "" "&AOk-*"', AUTH) == c.List("a", "", ("é*",))
    assert p('a LIST "" ""', AUTH) == c.List("a", "", ("",))
    bad('a LIST ""', AUTH)
    bad('a LIST "" a(b', AUTH)


def test_list_extended() -> None:
    event = p('a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "Sent*") RETURN (CHILDREN SPECIAL-USE)', AUTH)
    assert event == c.List("a", "", ("INBOX", "Sent*"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
                           frozenset({"CHILDREN", "SPECIAL-USE"}), (), True)
    event = p('a LIST "" % RETURN (STATUS (MESSAGES UNSEEN SIZE DELETED))', AUTH)
    assert event == c.List("a", "", ("%",), frozenset(), frozenset({"STATUS"}),
                           ("MESSAGES", "UNSEEN", "SIZE", "DELETED"), True)
    assert p('a LIST () "" %', AUTH) == c.List("a", "", ("%",), extended=True)
    assert p('a LIST "" % RETURN ()', AUTH) == c.List("a", "", ("%",), extended=True)
    assert p('a LIST (special-use remote) "" *', AUTH) == c.List(
        "a", "", ("*",), frozenset({"SPECIAL-USE", "REMOTE"}), extended=True)
    bad('a LIST (RECURSIVEMATCH) "" %', AUTH)  # RFC 5258 3.1
    bad('a LIST (RECURSIVEMATCH REMOTE) "" %', AUTH)
    bad('a LIST (FOO) "" %', AUTH)
    bad('a LIST "" % RETURN (FOO)', AUTH)
    bad('a LIST "" % RETURN (STATUS (BOGUS))', AUTH)
    bad('a LIST "" () ', AUTH)


def test_lsub_and_namespace() -> None:
    assert p('a LSUB "" "*"', AUTH) == c.Lsub("a", "", "*")
    assert p("a NAMESPACE", AUTH) == c.Namespace("a")


def test_status() -> None:
    assert p("a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ)", AUTH) == \
        c.Status("a", "INBOX", ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                                "HIGHESTMODSEQ"))
    assert p("a STATUS x (appendlimit)", AUTH) == c.Status("a", "x", ("APPENDLIMIT",))
    bad("a STATUS INBOX ()", AUTH)
    bad("a STATUS INBOX (FOO)", AUTH)
    bad("a STATUS INBOX MESSAGES", AUTH)


def test_append_forms() -> None:
    msg = b"From: a\r\n\r\nhi\r\n"
    lit = b"{%d}\r\n" % len(msg) + msg
    assert p(b"a APPEND INBOX " + lit, AUTH) == c.Append("a", "INBOX", message=msg)
    assert p(b"a APPEND INBOX () " + lit, AUTH) == c.Append("a", "INBOX", message=msg)
    when = datetime(2024, 7, 5, 23, 1, 2, tzinfo=timezone(-timedelta(hours=7, minutes=30)))
    assert p(b'a APPEND Sent (\\Seen \\draft) " 5-Jul-2024 23:01:02 -0730" ' + lit, AUTH) == \
        c.Append("a", "Sent", ("\\Seen", "\\Draft"), when, msg)
    assert p(b'a APPEND Sent "05-Jul-2024 23:01:02 -0730" ' + lit, AUTH) == c.Append("a", "Sent", (), when, msg)
    for broken in (b'a APPEND INBOX "35-Jul-2024 23:01:02 +0000" ',
                   b'a APPEND INBOX "05-Jux-2024 23:01:02 +0000" ', b'a APPEND INBOX "05-Jul-2024 24:01:02 +0000" ',
                   b"a APPEND INBOX (\\Recent) ", b"a APPEND INBOX (\\Seen ", b"a APPEND INBOX UTF8 ("):
        bad(broken + lit, AUTH)
    bad(b"a APPEND INBOX", AUTH)
    bad(b'a APPEND INBOX "text"', AUTH)
    bad(b"a APPEND INBOX UTF8 (" + lit + b")", AUTH)  # RFC 6855 4: literal8 only


# ----- selected ---------------------------------------------------------------------------------------
def test_simple_selected_commands() -> None:
    for verb, cls in (("CHECK", c.Check), ("CLOSE", c.Close), ("UNSELECT", c.Unselect)):
        assert p(f"a {verb}") == cls("a")
    assert p("a EXPUNGE") == c.Expunge("a")
    assert p("a UID EXPUNGE 3:5,9") == c.Expunge("a", SequenceSet(((3, 5), (9, 9))))
    bad("a UID EXPUNGE")
    bad("a EXPUNGE 1")
    assert p("a IDLE", SEL) == c.Idle("a")


@pytest.mark.parametrize(("text", "ranges", "saved"), [
    ("1", ((1, 1),), False), ("1:*", ((1, STAR),), False), ("*", ((STAR, STAR),), False),
    ("*:4", ((STAR, 4),), False), ("5:2", ((5, 2),), False),
    ("2,4:7,9,12:*", ((2, 2), (4, 7), (9, 9), (12, STAR)), False),
    ("$", (), True), ("1:3,$", ((1, 3),), True), ("4294967295", ((4294967295, 4294967295),), False),
])
def test_sequence_sets(text: str, ranges: tuple[tuple[int, int], ...], saved: bool) -> None:
    event = p(f"a COPY {text} Trash")
    assert event == c.Copy("a", False, SequenceSet(ranges, saved), "Trash")


@pytest.mark.parametrize("text", ["0", "1:0", "0:*", "1,", ",1", "1::2", "1:2:3", "4294967296", "a", "-1", "1 ,2",
                                  "$$"])
def test_bad_sequence_sets(text: str) -> None:
    bad(f"a COPY {text} Trash")


def test_copy_move_uid_forms() -> None:
    assert p("a UID COPY 1:* Trash") == c.Copy("a", True, SequenceSet(((1, STAR),)), "Trash")
    assert p('a MOVE 2 "Archive/2024"') == c.Move("a", False, SequenceSet.of(2), "Archive/2024")
    assert p("a uid move 2 inbox") == c.Move("a", True, SequenceSet.of(2), "INBOX")
    bad("a MOVE 1")
    bad("a UID FROB 1")
    bad("a UID")


def item(name: str, section: Section | None = None, partial: tuple[int, int] | None = None,
         peek: bool = False) -> FetchItem:
    return FetchItem(name, section, partial, peek)


@pytest.mark.parametrize(("spec", "items"), [
    ("FLAGS", (item("FLAGS"),)),
    ("ALL", (item("FLAGS"), item("INTERNALDATE"), item("RFC822.SIZE"), item("ENVELOPE"))),
    ("fast", (item("FLAGS"), item("INTERNALDATE"), item("RFC822.SIZE"))),
    ("FULL", (item("FLAGS"), item("INTERNALDATE"), item("RFC822.SIZE"), item("ENVELOPE"), item("BODY"))),
    ("(UID RFC822.SIZE BODYSTRUCTURE BODY ENVELOPE MODSEQ)",
     tuple(item(n) for n in ("UID", "RFC822.SIZE", "BODYSTRUCTURE", "BODY", "ENVELOPE", "MODSEQ"))),
    ("(RFC822 RFC822.HEADER RFC822.TEXT)", (item("RFC822"), item("RFC822.HEADER"), item("RFC822.TEXT"))),
    ("BODY[]", (item("BODY[]", Section()),)),
    ("BODY.PEEK[]<0.2048>", (item("BODY[]", Section(), (0, 2048), True),)),
    ("BODY[TEXT]", (item("BODY[]", Section((), "TEXT")),)),
    ("BODY[HEADER]", (item("BODY[]", Section((), "HEADER")),)),
    ("body[header.fields (from To)]", (item("BODY[]", Section((), "HEADER.FIELDS", ("FROM", "TO"))),)),
    ("BODY[HEADER.FIELDS.NOT (X-A)]", (item("BODY[]", Section((), "HEADER.FIELDS.NOT", ("X-A",))),)),
    ('BODY[HEADER.FIELDS (a:b "c d" "")]', (item("BODY[]", Section((), "HEADER.FIELDS", ("A:B", "C D", ""))),)),
    ("BODY[1]", (item("BODY[]", Section((1,))),)),
    ("BODY[1.2.3]", (item("BODY[]", Section((1, 2, 3))),)),
    ("BODY[2.MIME]", (item("BODY[]", Section((2,), "MIME")),)),
    ("BODY[3.1.HEADER]", (item("BODY[]", Section((3, 1), "HEADER")),)),
    ("BODY[4.TEXT]<10.5>", (item("BODY[]", Section((4,), "TEXT"), (10, 5)),)),
    ("BINARY[1]", (item("BINARY[]", Section((1,))),)),
    ("BINARY.PEEK[]<0.10>", (item("BINARY[]", Section(), (0, 10), True),)),
    ("BINARY.SIZE[2.1]", (item("BINARY.SIZE[]", Section((2, 1))),)),
    ('BODY[HEADER.FIELDS ("Subject" {4+}\r\nDate)]',
     (item("BODY[]", Section((), "HEADER.FIELDS", ("SUBJECT", "DATE"))),)),
])
def test_fetch_items(spec: str, items: tuple[FetchItem, ...]) -> None:
    assert p(f"a FETCH 1:3 {spec}") == c.Fetch("a", False, SequenceSet(((1, 3),)), items)


@pytest.mark.parametrize("spec", [
    "", "()", "(FLAGS", "FOO", "(ALL)", "BODY[", "BODY[MIME]", "BODY[0]", "BODY[1.0]", "BODY[TEXT.1]",
    "BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]", "BODY[]<0>", "BODY[]<0.0>", "BODY[]<a.1>",
    "BINARY[TEXT]", "BINARY.SIZE[]<0.5>", "BODY.PEEK", "BINARY", "FLAGS FLAGS", "BODY[HEADER.FIELDS (a(b)]",
    "(FLAGS)(UID)", "RFC822.FOO", "BODY [1]",
])
def test_bad_fetch_items(spec: str) -> None:
    bad(f"a FETCH 1 {spec}")


def test_fetch_response_names() -> None:
    event = p("a FETCH 1 (BODY.PEEK[1.HEADER.FIELDS (From)]<5.10> BINARY.SIZE[1] BINARY[2]<0.1> BODY[])")
    assert isinstance(event, c.Fetch)
    assert [i.response_name() for i in event.items] == [
        "BODY[1.HEADER.FIELDS (FROM)]<5>", "BINARY.SIZE[1]", "BINARY[2]<0>", "BODY[]"]
    assert [i.sets_seen for i in event.items] == [False, False, True, True]


def test_uid_fetch_adds_uid_and_changedsince_adds_modseq() -> None:
    event = p("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)")
    assert event == c.Fetch("a", True, SequenceSet(((1, STAR),)), (item("FLAGS"), item("UID"), item("MODSEQ")), 12345)
    assert p("a UID FETCH 1 (UID FLAGS)") == c.Fetch("a", True, SequenceSet.of(1), (item("UID"), item("FLAGS")))


def test_fetch_vanished_needs_qresync_uid_and_changedsince() -> None:
    q = ("QRESYNC",)
    event = p("a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)", SEL, q)
    assert isinstance(event, c.Fetch) and event.vanished and event.changedsince == 12345
    bad("a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    bad("a FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", SEL, q)
    bad("a UID FETCH 1 (FLAGS) (VANISHED)", SEL, q)
    assert isinstance(p("a FETCH 1 FLAGS (CHANGEDSINCE 0)"), c.Fetch)  # lenient, as Dovecot
    bad("a FETCH 1 FLAGS (CHANGEDSINCE)")
    bad("a FETCH 1 FLAGS (FOO 1)")
    bad("a FETCH 1 FLAGS ()")


@pytest.mark.parametrize(("spec", "mode", "silent", "flags"), [
    ("FLAGS (\\Seen)", "set", False, ("\\Seen",)),
    ("+FLAGS (\\seen \\DELETED $Forwarded)", "add", False, ("\\Seen", "\\Deleted", "$Forwarded")),
    ("-FLAGS.SILENT (\\Flagged)", "remove", True, ("\\Flagged",)),
    ("FLAGS ()", "set", False, ()),
    ("+FLAGS \\Answered \\Draft", "add", False, ("\\Answered", "\\Draft")),
    ("flags.silent foo]bar", "set", True, ("foo]bar",)) if False else ("flags.silent foo", "set", True, ("foo",)),
])
def test_store(spec: str, mode: str, silent: bool, flags: tuple[str, ...]) -> None:
    assert p(f"a STORE 1:2 {spec}") == c.Store("a", False, SequenceSet(((1, 2),)), mode, silent, flags)  # type: ignore[arg-type]


def test_store_unchangedsince_and_uid() -> None:
    assert p("a UID STORE 7 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)") == c.Store(
        "a", True, SequenceSet.of(7), "add", True, ("\\Deleted",), 320162338)
    assert p("a STORE $ (UNCHANGEDSINCE 0) FLAGS ()") == c.Store(
        "a", False, SequenceSet(saved=True), "set", False, (), 0)


@pytest.mark.parametrize("spec", ["", "FLAGS", "+FLAGS", "FLAGS (\\Recent)", "FLAGS (\\Foo)", "*FLAGS (x)",
                                  "FLAG (x)", "FLAGS (a", "(UNCHANGEDSINCE) FLAGS (x)", "(FOO 1) FLAGS (x)",
                                  "FLAGS (a(b)", "FLAGS (%)"])
def test_bad_store(spec: str) -> None:
    bad(f"a STORE 1 {spec}")


def test_getquota_and_setquota() -> None:
    assert p('a GETQUOTA ""', AUTH) == c.GetQuota("a", "")
    assert p("a SETQUOTA \"\" (STORAGE 512 message 10)", AUTH) == c.SetQuota(
        "a", "", (("STORAGE", 512), ("MESSAGE", 10)))
    assert p("a SETQUOTA x ()", AUTH) == c.SetQuota("a", "x", ())
    bad("a SETQUOTA x (STORAGE)", AUTH)
    bad("a GETQUOTA", AUTH)


def test_sort_and_thread() -> None:
    event = p("a SORT (REVERSE DATE subject) UTF-8 SINCE 1-Feb-1994")
    assert isinstance(event, c.Sort) and event.criteria == (c.SortCriterion("DATE", True), c.SortCriterion("SUBJECT"))
    assert event.charset == "UTF-8" and not event.uid
    event = p("a UID SORT (ARRIVAL DISPLAYFROM) us-ascii ALL")
    assert isinstance(event, c.Sort) and event.uid and event.charset == "US-ASCII"
    event = p("a THREAD REFERENCES UTF-8 ALL")
    assert isinstance(event, c.Thread) and event.algorithm == "REFERENCES"
    assert isinstance(p("a UID THREAD orderedsubject UTF-8 UNSEEN"), c.Thread)
    for broken in ("a SORT () UTF-8 ALL", "a SORT (FOO) UTF-8 ALL", "a SORT (DATE) ALL", "a SORT (REVERSE) UTF-8 ALL",
                   "a THREAD FOO UTF-8 ALL", "a THREAD REFERENCES UTF-8", "a SORT (DATE) UTF-8"):
        bad(broken)
    assert bad("a SORT (DATE) KOI8-R ALL").code == "BADCHARSET (UTF-8 US-ASCII)"


def test_login_with_non_utf8_bytes_is_a_login_not_a_bad() -> None:
    event = p(b"a LOGIN {4+}\r\nj\xf6rg {3+}\r\np\xe9w", NA)
    assert event == c.Login("a", "j\ufffdrg", "p\ufffdw")
