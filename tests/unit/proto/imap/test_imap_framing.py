"""Framing of IMAP commands: lines, literals ({n}, {n+}, ~{n}) split at every byte, limits, phases."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.connection import ImapServerConnection
from hardmail.proto.imap.state import ConnState, ImapOptions

from .conftest import Feeder, make_conn, parse_one

AUTH = ConnState.AUTHENTICATED
SEL = ConnState.SELECTED
Make = Callable[..., Feeder]


def test_sync_literal_asks_for_continuation_once_then_completes(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"a1 LOGIN {4}\r\n") == [c.ContinuationNeeded()]
    assert f.feed(b"fred") == []
    assert f.feed(b" {6}\r\n") == [c.ContinuationNeeded()]
    assert f.feed(b"s3cr\"t\r\n") == [c.Login("a1", "fred", 's3cr"t')]


def test_every_split_point_of_a_command_with_literals_gives_the_same_command() -> None:
    data = b'a1 APPEND "Sent" (\\Seen $Fwd) "01-Feb-2024 10:11:12 +0100" {12+}\r\nSubject: x\r\n\r\n'
    expected = parse_one(data, AUTH)
    assert isinstance(expected, c.Append) and expected.message == b"Subject: x\r\n"
    for cut in range(1, len(data)):
        for cut2 in range(cut, len(data), 7):
            conn = make_conn(AUTH)
            events: list[c.Event | c.NeedData] = []
            for piece in (data[:cut], data[cut:cut2], data[cut2:]):
                conn.receive_data(piece)
                while (e := conn.next_event()) is not c.NEED_DATA:
                    events.append(e)
            assert events == [expected], (cut, cut2)


def test_literal_data_is_taken_verbatim_including_crlf_braces_and_quotes(feeder: Make) -> None:
    f = feeder()
    f.feed(b"t LOGIN u {12+}\r\nx{3}\r\n\"a\\ b)")
    assert f.feed(b"\r\n") == [c.Login("t", "u", 'x{3}\r\n"a\\ b)')]
    (event,) = feeder(AUTH).feed(b"t CREATE {6+}\r\nx\r\ny{1}\r\n")
    assert isinstance(event, c.BadCommand) and "mailbox name" in event.text


def test_non_synchronizing_literal_needs_no_continuation(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"a LOGIN {3+}\r\nbob {2+}\r\npw\r\n") == [c.Login("a", "bob", "pw")]


def test_zero_length_literals(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"a LOGIN {0}\r\n") == [c.ContinuationNeeded()]
    assert f.feed(b" {0+}\r\n\r\n") == [c.Login("a", "", "")]


def test_literal8_in_append_and_utf8_form(feeder: Make) -> None:
    f = feeder(AUTH)
    events = f.feed(b"a APPEND INBOX ~{5+}\r\nab\x00cd\r\nb APPEND INBOX UTF8 (~{3+}\r\n\xc3\xa9!)\r\n")
    assert events == [c.Append("a", "INBOX", message=b"ab\x00cd", binary=True),
                      c.Append("b", "INBOX", message=b"\xc3\xa9!", utf8=True)]


def test_nul_in_a_plain_literal_is_refused() -> None:
    event = parse_one(b"a APPEND INBOX {3+}\r\na\x00b\r\n", AUTH)
    assert isinstance(event, c.BadCommand) and "NUL" in event.text


def test_pipelined_commands_come_one_at_a_time(feeder: Make) -> None:
    f = feeder()
    events = f.feed(b"a NOOP\r\nb CAPABILITY\r\nc LOGOUT\r\nd NOOP\r\n")
    assert events == [c.Noop("a"), c.Capability("b"), c.Logout("c")]
    assert f.conn.state is ConnState.LOGOUT


def test_bare_lf_line_end_is_accepted_and_empty_lines_ignored(feeder: Make) -> None:
    assert feeder().feed(b"\r\n\na NOOP\n  \r\nb NOOP\r\n") == [c.Noop("a"), c.Noop("b")]


# ----- literal limits (RFC 7888 4, RFC 7889) --------------------------------------------------------
def test_oversized_sync_literal_is_refused_before_continuation_and_not_read(feeder: Make) -> None:
    f = feeder(max_literal=100)
    (event,) = f.feed(b"a LOGIN {101}\r\n")
    assert event == c.LiteralTooLarge("a", 101, 100, True, "BAD", "Literal too large")
    assert f.feed(b"b NOOP\r\n") == [c.Noop("b")]  # the client did not send the data


def test_oversized_append_is_no_toobig_before_continuation(feeder: Make) -> None:
    f = feeder(AUTH, append_limit=1000)
    (event,) = f.feed(b"a APPEND INBOX {1001}\r\n")
    assert isinstance(event, c.LiteralTooLarge) and event.status == "NO" and event.code == "TOOBIG"
    assert f.feed(b"a APPEND INBOX {1000}\r\n") == [c.ContinuationNeeded()]


def test_oversized_non_sync_literal_is_skipped_then_bad(feeder: Make) -> None:
    f = feeder(max_literal=10)
    data = b"a LOGIN {20+}\r\n" + b"x" * 20 + b" {2+}\r\npw\r\nb NOOP\r\n"
    events = f.feed(data)
    assert [type(e) for e in events] == [c.LiteralTooLarge, c.Noop]
    assert events[0] == c.LiteralTooLarge("a", 20, 10, False, "BAD", "Literal too large")
    assert f.max_buffered <= (len(data) if not f.bytewise else 20)


def test_skipped_literal_is_not_kept_in_memory() -> None:
    conn = make_conn(max_literal=10)
    conn.receive_data(b"a LOGIN {10000000+}\r\n")
    assert conn.next_event() is c.NEED_DATA
    chunk = b"z" * 100_000
    for _ in range(100):
        conn.receive_data(chunk)
        assert conn.next_event() is c.NEED_DATA
        assert conn.buffered == 0
    conn.receive_data(b" x\r\n")
    assert isinstance(conn.next_event(), c.LiteralTooLarge)


def test_literal_minus_limits_non_sync_literals_to_4096(feeder: Make) -> None:
    f = feeder(AUTH, literal_plus=False)
    body = b"y" * 4097
    events = f.feed(b"a APPEND INBOX {4097+}\r\n" + body + b"\r\nb APPEND INBOX {4096+}\r\n" + body[:4096] + b"\r\n")
    assert isinstance(events[0], c.LiteralTooLarge) and events[0].code == "TOOBIG" and events[0].status == "BAD"
    assert isinstance(events[1], c.Append) and len(events[1].message) == 4096
    assert f.feed(b"c APPEND INBOX {4097}\r\n") == [c.ContinuationNeeded()]


def test_total_literal_bytes_of_a_command_are_bounded(feeder: Make) -> None:
    f = feeder(max_literal=10)
    events = f.feed(b"a LOGIN {6+}\r\nabcdef {6+}\r\nghijkl\r\nb NOOP\r\n")
    assert isinstance(events[0], c.LiteralTooLarge) and events[1] == c.Noop("b")


# ----- line limits ------------------------------------------------------------------------------
def test_line_over_max_line_is_bad_with_its_tag_and_the_rest_skipped(feeder: Make) -> None:
    f = feeder(max_line=100)
    events = f.feed(b"a7 NOOP " + b"x" * 300 + b"\r\nb NOOP\r\n")
    assert events == [c.LineTooLong("a7"), c.Noop("b")]
    assert f.max_buffered <= (400 if not f.bytewise else 110)


def test_long_line_buffer_stays_bounded_while_it_streams_in() -> None:
    conn = make_conn(max_line=100)
    conn.receive_data(b"a NOOP ")
    for _ in range(1000):
        conn.receive_data(b"x" * 1000)
        assert conn.next_event() is c.NEED_DATA
        assert conn.buffered == 0
    conn.receive_data(b"\r\nb NOOP\r\n")
    assert conn.next_event() == c.LineTooLong("a")
    assert conn.next_event() == c.Noop("b")


def test_long_line_ending_in_a_non_sync_literal_skips_that_literal(feeder: Make) -> None:
    f = feeder(max_line=50)
    events = f.feed(b"a LOGIN " + b"u" * 80 + b" {5+}\r\nhello\r\nb NOOP\r\n")
    assert events == [c.LineTooLong("a"), c.Noop("b")]


def test_command_text_across_literals_counts_toward_max_line(feeder: Make) -> None:
    f = feeder(max_line=60)
    events = f.feed(b"a LOGIN {1+}\r\nx " + b'"' + b"p" * 70 + b'"\r\nb NOOP\r\n')
    assert events == [c.LineTooLong("a"), c.Noop("b")]


def test_exactly_max_line_is_accepted(feeder: Make) -> None:
    line = b"a LOGIN u " + b"p" * 40
    f = feeder(max_line=len(line))
    assert f.feed(line + b"\r\n") == [c.Login("a", "u", "p" * 40)]
    f2 = feeder(max_line=len(line) - 1)
    assert f2.feed(line + b"\r\n") == [c.LineTooLong("a")]


# ----- tags, verbs, states ------------------------------------------------------------------------
@pytest.mark.parametrize("line", [b"+ NOOP", b"a+b NOOP", b"(a NOOP", b"a*b NOOP", b'"a" NOOP', b"a%b NOOP",
                                  b"a\\b NOOP", b"\xc3\xa9 NOOP", b"{3} NOOP"])
def test_invalid_tags_get_untagged_bad(line: bytes) -> None:
    event = parse_one(line + b"\r\n", ConnState.NOT_AUTHENTICATED)
    assert isinstance(event, c.BadCommand) and event.tag == "*"


@pytest.mark.parametrize("tag", ["a]b", "A001", "x.y-z_", "!#$&'", "1"])
def test_valid_tags(tag: str) -> None:
    assert parse_one(f"{tag} NOOP\r\n".encode(), ConnState.NOT_AUTHENTICATED) == c.Noop(tag)


def test_missing_command_and_unknown_command(feeder: Make) -> None:
    f = feeder()
    events = f.feed(b"a\r\nb FROB x\r\nc  NOOP\r\n")
    assert [(e.tag, e.text) for e in events if isinstance(e, c.BadCommand)] == [
        ("a", "Missing command"), ("b", "Unknown command"), ("c", "Missing command")]


def test_command_names_are_case_insensitive() -> None:
    assert parse_one(b"a nOoP\r\n", ConnState.NOT_AUTHENTICATED) == c.Noop("a")
    assert isinstance(parse_one(b"a uid fetch 1 flags\r\n"), c.Fetch)


@pytest.mark.parametrize(("line", "state"), [
    (b"a SELECT INBOX", ConnState.NOT_AUTHENTICATED), (b"a FETCH 1 FLAGS", AUTH), (b"a LOGIN a b", AUTH),
    (b"a AUTHENTICATE PLAIN", SEL), (b"a STARTTLS", AUTH), (b"a CLOSE", AUTH), (b"a UID FETCH 1 UID", AUTH),
    (b"a EXPUNGE", ConnState.NOT_AUTHENTICATED), (b"a IDLE", ConnState.NOT_AUTHENTICATED),
])
def test_commands_in_the_wrong_state_are_bad(line: bytes, state: ConnState) -> None:
    event = parse_one(line + b"\r\n", state)
    assert isinstance(event, c.BadCommand) and event.tag == "a"


def test_wrong_state_sync_literal_is_refused_before_continuation(feeder: Make) -> None:
    f = feeder()
    (event,) = f.feed(b"a APPEND INBOX {10}\r\n")
    assert isinstance(event, c.BadCommand) and "authentication" in event.text
    assert f.feed(b"b NOOP\r\n") == [c.Noop("b")]


def test_unknown_command_with_non_sync_literal_skips_the_data(feeder: Make) -> None:
    f = feeder()
    events = f.feed(b"a XYZZY {5+}\r\n\r\nb N\r\nc NOOP\r\n")
    assert [type(e) for e in events] == [c.BadCommand, c.Noop]


def test_select_leaves_selected_state_until_the_session_confirms() -> None:
    conn = make_conn(SEL)
    conn.receive_data(b"a SELECT nosuch\r\nb FETCH 1 FLAGS\r\n")
    assert isinstance(conn.next_event(), c.Select)
    assert conn.state is AUTH
    assert isinstance(conn.next_event(), c.BadCommand)
    conn.selected()
    conn.receive_data(b"c CLOSE\r\n")
    assert conn.next_event() == c.Close("c") and conn.state is AUTH


def test_login_state_follows_the_session() -> None:
    conn = make_conn()
    conn.receive_data(b"a LOGIN u p\r\nb SELECT INBOX\r\n")
    assert isinstance(conn.next_event(), c.Login)
    conn.authenticated()
    assert isinstance(conn.next_event(), c.Select)


def test_too_many_bad_commands_becomes_fatal(feeder: Make) -> None:
    f = feeder(max_bad_commands=3)
    events = f.feed(b"a X\r\n" * 4)
    assert [e.fatal for e in events if isinstance(e, c.BadCommand)] == [False, False, False, True]


# ----- STARTTLS, AUTHENTICATE, IDLE, LOGOUT -----------------------------------------------------
def test_starttls_holds_input_and_start_tls_drops_it(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"a STARTTLS\r\nb LOGIN injected x\r\n") == [c.StartTls("a")]
    f.conn.start_tls()
    assert f.conn.buffered == 0 and f.conn.tls_active
    assert f.feed(b"c NOOP\r\n") == [c.Noop("c")]
    (again,) = f.feed(b"d STARTTLS\r\n")
    assert isinstance(again, c.BadCommand)


def test_starttls_unavailable_is_bad() -> None:
    event = parse_one(b"a STARTTLS\r\n", ConnState.NOT_AUTHENTICATED, starttls_available=False)
    assert isinstance(event, c.BadCommand)


def test_sasl_exchange_lines(feeder: Make) -> None:
    f = feeder(max_line=200)
    assert f.feed(b"a AUTHENTICATE SCRAM-SHA-256\r\n") == [c.Authenticate("a", "SCRAM-SHA-256")]
    f.conn.expect_sasl_response()
    (response,) = f.feed(b"biwsbj11c2VyLHI9\r\n")
    assert response == c.SaslResponse(b"biwsbj11c2VyLHI9") and not response.cancelled
    f.conn.expect_sasl_response()
    (cancel,) = f.feed(b"*\r\n")
    assert isinstance(cancel, c.SaslResponse) and cancel.cancelled
    f.conn.expect_sasl_response()
    assert f.feed(b"x" * 300 + b"\r\nb NOOP\r\n") == [c.LineTooLong("a", "SASL response too long"), c.Noop("b")]


def test_sasl_ir_initial_responses() -> None:
    assert parse_one(b"a AUTHENTICATE PLAIN AHVzZXIAcHc=\r\n", ConnState.NOT_AUTHENTICATED) == \
        c.Authenticate("a", "PLAIN", b"\x00user\x00pw")
    assert parse_one(b"a AUTHENTICATE plain =\r\n", ConnState.NOT_AUTHENTICATED) == c.Authenticate("a", "PLAIN", b"")
    for bad in (b"a AUTHENTICATE PLAIN AHV*\r\n", b"a AUTHENTICATE PLAIN AHVzZ\r\n", b"a AUTHENTICATE\r\n"):
        assert isinstance(parse_one(bad, ConnState.NOT_AUTHENTICATED), c.BadCommand)


def test_idle_then_done(feeder: Make) -> None:
    f = feeder(AUTH)
    assert f.feed(b"i1 IDLE\r\n") == [c.Idle("i1")]
    f.conn.expect_idle_done()
    assert f.feed(b"done\r\n") == [c.IdleDone("i1")]
    assert f.feed(b"i2 IDLE\r\n") == [c.Idle("i2")]
    f.conn.expect_idle_done()
    (bad,) = f.feed(b"i3 NOOP\r\n")
    assert isinstance(bad, c.BadCommand) and bad.tag == "i2"


def test_logout_closes_input(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"z LOGOUT\r\n") == [c.Logout("z")]
    assert f.feed(b"a NOOP\r\n") == []
    assert f.conn.state is ConnState.LOGOUT


# ----- ENABLE -----------------------------------------------------------------------------------------
def test_enable_turns_on_offered_extensions_once(feeder: Make) -> None:
    f = feeder(AUTH)
    (first,) = f.feed(b"e ENABLE condstore X-UNKNOWN UTF8=ACCEPT\r\n")
    assert first == c.Enable("e", ("CONDSTORE", "X-UNKNOWN", "UTF8=ACCEPT"), ("CONDSTORE", "UTF8=ACCEPT"))
    assert f.conn.utf8_enabled and f.conn.condstore_enabled and not f.conn.qresync_enabled
    (second,) = f.feed(b"e ENABLE CONDSTORE QRESYNC\r\n")
    assert isinstance(second, c.Enable) and second.enabled == ("QRESYNC",)


def test_enable_offers_only_what_the_options_allow() -> None:
    event = parse_one(b"e ENABLE UTF8=ACCEPT IMAP4rev2\r\n", AUTH, enable_offered=("IMAP4REV2",))
    assert isinstance(event, c.Enable) and event.enabled == ("IMAP4REV2",)
    assert isinstance(parse_one(b"e ENABLE\r\n", AUTH), c.BadCommand)


def test_enable_imap4rev2_makes_mailbox_names_utf8() -> None:
    conn = make_conn(AUTH)
    conn.receive_data(b"e ENABLE IMAP4rev2\r\na SELECT \"&AOk-t\xc3\xa9\"\r\n")
    conn.next_event()
    assert conn.imap4rev2_enabled
    assert conn.next_event() == c.Select("a", "&AOk-t\xe9")


# ----- robustness ---------------------------------------------------------------------------------
COMMAND_SAMPLES = [
    b"a COPY 1 {3}\r\nbob\r\n", b'b SELECT "INBOX" (QRESYNC (1 2 1:5 (1,3 2,9)))\r\n',
    b'c UID FETCH 1:*,$ (BODY.PEEK[1.HEADER.FIELDS (A B)]<0.5> FLAGS) (CHANGEDSINCE 3 VANISHED)\r\n',
    b'd SEARCH RETURN (SAVE) CHARSET UTF-8 OR (FROM {3+}\r\n\xc3\xa9t) NOT 1:3 SENTON "1-Jan-2020"\r\n',
    b"e APPEND x (\\Seen) \" 1-Jan-2020 01:02:03 -0500\" ~{4+}\r\n\x00\x01\x02\x03\r\n",
    b"f STORE 1:* (UNCHANGEDSINCE 9) -FLAGS.SILENT (\\Deleted)\r\n", b"g LIST () \"\" (% *) RETURN (STATUS (SIZE))\r\n",
]


def test_random_bytes_and_mutations_never_raise() -> None:
    rng = random.Random(12)
    alphabet = b'aA1 ()[]{}<>"\\*%$:,.+-~\r\n\x00\xc3\xa9'
    for round_ in range(3000):
        conn = ImapServerConnection(ImapOptions(max_line=200, max_literal=50))
        conn.state = rng.choice(list(ConnState)[:3])
        conn.enable("QRESYNC")
        if round_ % 2:
            data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
        else:
            sample = bytearray(rng.choice(COMMAND_SAMPLES))
            for _ in range(rng.randrange(1, 4)):
                sample[rng.randrange(len(sample))] = rng.choice(alphabet)
            data = bytes(sample)
        for i in range(0, len(data), rng.randrange(1, 9)):
            conn.receive_data(data[i:i + 9])
            for _ in range(100):
                if conn.next_event() is c.NEED_DATA:
                    break
            assert conn.buffered <= 200 + 50 + 20


def test_samples_parse_whole_and_bytewise_alike() -> None:
    for sample in COMMAND_SAMPLES:
        event = parse_one(sample, SEL, enabled=("QRESYNC",))
        assert isinstance(event, c.Command), (sample, event)


def test_append_continuation_names_the_target_and_can_be_refused(feeder: Make) -> None:
    f = feeder(AUTH)
    (event,) = f.feed(b'a1 APPEND "Dra&APw-fts" (\\Draft) " 1-Jan-2024 00:00:00 +0000" {310}\r\n')
    assert isinstance(event, c.ContinuationNeeded)
    assert (event.tag, event.size, event.append_mailbox) == ("a1", 310, "Draüfts")
    f.conn.refuse_literal()  # the session answers "a1 NO [TRYCREATE]" instead of "+"
    assert f.feed(b"a2 NOOP\r\n") == [c.Noop("a2")]
    (first,) = f.feed(b"a3 APPEND {5}\r\n")
    assert isinstance(first, c.ContinuationNeeded) and first.append_mailbox is None  # the name's literal
    (second,) = f.feed(b"INBOX UTF8 (~{2}\r\n")
    assert isinstance(second, c.ContinuationNeeded) and second.append_mailbox == "INBOX"
    assert f.feed(b"hi)\r\n") == [c.Append("a3", "INBOX", message=b"hi", utf8=True)]


@pytest.mark.parametrize("line", [b"a SELECT INBOX (CONDSTORE)", b"a STATUS x (HIGHESTMODSEQ)", b"a FETCH 1 (MODSEQ)",
                                  b"a FETCH 1 FLAGS (CHANGEDSINCE 4)", b"a STORE 1 (UNCHANGEDSINCE 4) FLAGS ()",
                                  b"a SEARCH OR SEEN MODSEQ 3"])
def test_condstore_enabling_commands(line: bytes) -> None:
    conn = make_conn(SEL)
    conn.receive_data(line + b"\r\n")
    assert isinstance(conn.next_event(), c.Command)
    assert conn.condstore_enabled  # RFC 7162 3.1


def test_plain_commands_do_not_enable_condstore() -> None:
    conn = make_conn(SEL)
    conn.receive_data(b"a FETCH 1 FLAGS\r\nb SELECT x\r\nc STATUS x (MESSAGES)\r\n")
    for _ in range(3):
        assert isinstance(conn.next_event(), c.Command)
    assert not conn.condstore_enabled


def test_input_before_the_tls_handshake_is_not_buffered() -> None:
    conn = make_conn()
    conn.receive_data(b"a STARTTLS\r\n")
    assert conn.next_event() == c.StartTls("a")
    conn.receive_data(b"x" * 100_000)
    assert conn.buffered == 0


def test_starttls_refused_by_the_session_resumes_in_the_clear(feeder: Make) -> None:
    f = feeder()
    assert f.feed(b"a STARTTLS\r\n") == [c.StartTls("a")]
    f.conn.tls_refused()
    assert f.feed(b"b NOOP\r\n") == [c.Noop("b")] and not f.conn.tls_active


def test_continuation_says_which_command_waits(feeder: Make) -> None:
    (event,) = feeder().feed(b"x1 LOGIN {5}\r\n")
    assert isinstance(event, c.ContinuationNeeded) and (event.tag, event.verb, event.size) == ("x1", "LOGIN", 5)


def test_oversized_non_sync_append_is_skipped_then_no_toobig(feeder: Make) -> None:
    f = feeder(AUTH, append_limit=10)
    events = f.feed(b"a APPEND INBOX {11+}\r\n" + b"m" * 11 + b"\r\nb NOOP\r\n")
    assert events == [c.LiteralTooLarge("a", 11, 10, False, "NO", "Message too large"), c.Noop("b")]


def _events_for(data: bytes, cuts: list[int]) -> list[c.Event]:
    conn = ImapServerConnection(ImapOptions(max_line=120, max_literal=40))
    conn.state = SEL
    conn.enable("QRESYNC")
    events: list[c.Event] = []
    start = 0
    for cut in [*cuts, len(data)]:
        conn.receive_data(data[start:cut])
        start = cut
        while (e := conn.next_event()) is not c.NEED_DATA:
            assert isinstance(e, c.Event)
            events.append(e)
    return events


def test_random_chunking_never_changes_the_events() -> None:
    rng = random.Random(7)
    alphabet = b'aA1 ()[]{}<>"\\*%$:,.+-~\r\n'
    for _ in range(1500):
        pieces = [bytearray(rng.choice(COMMAND_SAMPLES)) for _ in range(rng.randrange(1, 4))]
        for piece in pieces:
            for _ in range(rng.randrange(0, 3)):
                piece[rng.randrange(len(piece))] = rng.choice(alphabet)
        data = b"".join(bytes(p) for p in pieces)
        whole = _events_for(data, [])
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 12))))
        assert _events_for(data, cuts) == whole, data
        assert _events_for(data, list(range(1, len(data)))) == whole, data


def test_preauth_starts_authenticated() -> None:
    conn = ImapServerConnection(ImapOptions(preauth=True))
    assert conn.state is AUTH
    conn.receive_data(b"a LOGIN u p\r\nb SELECT INBOX\r\n")
    assert isinstance(conn.next_event(), c.BadCommand)
    assert isinstance(conn.next_event(), c.Select)


def test_too_many_fetch_items_is_bad() -> None:
    event = parse_one(b"a FETCH 1 (" + b" ".join([b"FLAGS"] * 300) + b")\r\n", SEL)
    assert isinstance(event, c.BadCommand) and "Too many" in event.text


def test_line_scan_restarts_after_the_buffer_is_dropped() -> None:
    conn = make_conn()
    conn.receive_data(b"a STARTTLS\r\n")
    conn.receive_data(b"")
    assert conn.next_event() == c.StartTls("a")
    conn.start_tls()
    conn.receive_data(b"b NO")
    assert conn.next_event() is c.NEED_DATA  # scanned 4 bytes without LF
    conn.receive_data(b"OP\r\n")
    assert conn.next_event() == c.Noop("b")
    conn.receive_data(b"c NOOP " + b"x" * 50)
    assert conn.next_event() is c.NEED_DATA
    conn.logged_out()
    assert conn.next_event() is c.NEED_DATA and conn.buffered == 0
