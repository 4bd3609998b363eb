"""The POP3 core: commands by state, CAPA, STLS, AUTH, limits, pipelining (RFC 1939, 2449, 2595, 5034)."""

from __future__ import annotations

from collections.abc import Callable

from hardmail.proto.pop3.connection import Pop3Options, Pop3ServerConnection, State
from hardmail.proto.pop3.events import Auth, AuthResponse, Pass, ProtocolError, Quit, Retr, Stls, Top, User
from hardmail.proto.pop3.replies import AUTH_FAILED, continuation, ok

from .conftest import Driver


def test_greeting_has_no_apop_timestamp() -> None:
    conn = Pop3ServerConnection(Pop3Options())
    assert conn.greeting() == b"+OK hardmail ready.\r\n"


def test_capa_inside_tls_offers_user_and_sasl(pop3: Callable[..., Driver]) -> None:
    driver = pop3()
    assert driver.lines(b"CAPA\r\n") == [
        "+OK Capability list follows", "TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING",
        "SASL PLAIN SCRAM-SHA-256", "EXPIRE NEVER", "IMPLEMENTATION hardmail", "."]


def test_capa_before_tls_offers_stls_and_no_login(pop3: Callable[..., Driver]) -> None:
    driver = pop3(tls_active=False)
    lines = driver.lines(b"capa\r\n")
    assert "STLS" in lines and "USER" not in lines and not any(x.startswith("SASL") for x in lines)


def test_logins_before_tls_are_refused_with_auth_code(pop3: Callable[..., Driver]) -> None:
    driver = pop3(tls_active=False)
    lines = driver.lines(b"USER alice\r\nPASS x\r\nAUTH PLAIN AGEAYg==\r\n")
    assert len(lines) == 3 and all(x.startswith("-ERR [AUTH] ") and "STLS" in x for x in lines)
    assert not any(isinstance(e, (User, Pass, Auth)) for e in driver.events)


def test_plaintext_login_when_allowed(pop3: Callable[..., Driver]) -> None:
    driver = pop3(tls_active=False, allow_plaintext_login=True)
    assert "USER" in driver.lines(b"CAPA\r\n")
    assert driver.lines(b"USER a\r\nPASS b\r\n") == ["+OK", "+OK Logged in."]


def test_stls_drops_pipelined_input(pop3: Callable[..., Driver]) -> None:
    driver = pop3(tls_active=False)
    driver.bytewise = False  # the injected command must be in the same read as STLS
    assert driver.lines(b"STLS\r\nUSER injected\r\n") == ["+OK Begin TLS negotiation now."]
    assert driver.conn.awaiting_tls
    driver.conn.start_tls()
    assert driver.lines(b"CAPA\r\n")[2] == "USER" and driver.conn.user is None
    assert driver.lines(b"STLS\r\n") == ["-ERR TLS is already active."]
    assert [type(e) for e in driver.events].count(Stls) == 1


def test_pass_needs_user_and_failed_pass_needs_it_again(pop3: Callable[..., Driver]) -> None:
    driver = pop3(answer=lambda e: AUTH_FAILED if isinstance(e, Pass) else None)
    assert driver.lines(b"PASS x\r\n") == ["-ERR No user name given: send USER first."]
    assert driver.lines(b"USER bob\r\nPASS has spaces \r\nPASS y\r\n") == [
        "+OK", "-ERR [AUTH] Authentication failed.", "-ERR No user name given: send USER first."]
    assert [e.password for e in driver.events if isinstance(e, Pass)] == ["has spaces "]


def test_three_login_failures_close(pop3: Callable[..., Driver]) -> None:
    driver = pop3(answer=lambda e: AUTH_FAILED if isinstance(e, Pass) else None)
    driver.feed(b"USER a\r\nPASS 1\r\nUSER a\r\nPASS 2\r\nUSER a\r\nPASS 3\r\nUSER a\r\n")
    assert driver.conn.closed and driver.wire.count(b"-ERR") == 3 and driver.wire.endswith(b"failed.\r\n")


def test_transaction_commands_need_login(pop3: Callable[..., Driver]) -> None:
    driver = pop3()
    assert driver.lines(b"STAT\r\nRETR 1\r\nXYZZY\r\n") == ["-ERR Not logged in.", "-ERR Not logged in.",
                                                           "-ERR Unknown command."]


def test_stat_list_uidl(logged_in: Driver) -> None:
    assert logged_in.lines(b"STAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 3\r\n") == [
        "+OK 3 1200", "+OK 3 messages:", "1 120", "2 80", "3 1000", ".", "+OK 2 80",
        "+OK", "1 000000030000004D", "2 000000050000004D", "3 000000090000004D", ".", "+OK 3 000000090000004D"]


def test_bad_message_numbers(logged_in: Driver) -> None:
    assert logged_in.lines(b"LIST 0\r\nLIST 4\r\nRETR x\r\nRETR -1\r\nTOP 1\r\nTOP 1 -2\r\nLIST 1 2\r\n") == [
        "-ERR There's no message 0.", "-ERR There's no message 4.", "-ERR Invalid message number: x",
        "-ERR Invalid message number: -1", "-ERR TOP needs a message number and a number of lines.",
        "-ERR Invalid number of lines: -2", "-ERR LIST takes at most one message number."]


def test_dele_marks_rset_unmarks_quit_carries_uids(logged_in: Driver) -> None:
    assert logged_in.lines(b"DELE 2\r\nDELE 2\r\nRETR 2\r\nSTAT\r\nLIST\r\n") == [
        "+OK Marked to be deleted.", "-ERR Message is deleted.", "-ERR Message is deleted.", "+OK 2 1120",
        "+OK 2 messages:", "1 120", "3 1000", "."]
    logged_in.lines(b"RSET\r\nDELE 1\r\nDELE 3\r\nQUIT\r\n")
    quit_event = logged_in.events[-1]
    assert isinstance(quit_event, Quit) and quit_event.deleted == (3, 9) and quit_event.update
    assert logged_in.conn.state is State.UPDATE and logged_in.conn.closed


def test_retr_and_top_events(logged_in: Driver) -> None:
    assert logged_in.lines(b"RETR 3\r\nTOP 1 0\r\n") == ["+OK 1000 octets", "+OK"]
    retr, top = logged_in.events[-2:]
    assert isinstance(retr, Retr) and (retr.uid, retr.size) == (9, 1000)
    assert isinstance(top, Top) and (top.uid, top.lines) == (3, 0)


def test_auth_exchange_with_continuation_and_cancel(pop3: Callable[..., Driver]) -> None:
    def answer(event: object) -> object:
        if isinstance(event, Auth):
            return continuation("Y2hhbGxlbmdl")
        if isinstance(event, AuthResponse) and not event.cancelled:
            return ok("Logged in.")
        return None

    driver = pop3(answer=answer)
    assert driver.lines(b"AUTH SCRAM-SHA-256\r\n*\r\n") == ["+ Y2hhbGxlbmdl", "-ERR Authentication aborted."]
    assert driver.lines(b"AUTH scram-sha-256 biwsbj1h\r\ncmVzcG9uc2U=\r\nSTAT\r\n") == [
        "+ Y2hhbGxlbmdl", "+OK Logged in.", "+OK 3 1200"]
    auth = [e for e in driver.events if isinstance(e, Auth)][-1]
    assert auth.mechanism == "SCRAM-SHA-256" and auth.initial_response == "biwsbj1h"


def test_auth_without_mechanism_lists_them_and_unknown_is_refused(pop3: Callable[..., Driver]) -> None:
    driver = pop3()
    assert driver.lines(b"AUTH\r\nAUTH CRAM-MD5\r\n") == [
        "+OK", "PLAIN", "SCRAM-SHA-256", ".", "-ERR Unsupported authentication mechanism."]


def test_line_too_long_is_discarded_to_its_end(pop3: Callable[..., Driver]) -> None:
    driver = pop3(max_line=64)
    assert driver.lines(b"NOOP " + b"x" * 200 + b"\r\nCAPA\r\n")[:2] == ["-ERR Input line too long.",
                                                                      "+OK Capability list follows"]
    assert isinstance(driver.events[0], ProtocolError)


def test_auth_lines_may_be_longer(pop3: Callable[..., Driver]) -> None:
    driver = pop3(max_line=64)
    driver.lines(b"AUTH PLAIN " + b"A" * 300 + b"\r\n")
    assert isinstance(driver.events[0], Auth)


def test_bare_lf_ends_a_line_and_utf8_is_required(pop3: Callable[..., Driver]) -> None:
    driver = pop3()
    assert driver.lines(b"NOOP\nUSER \xff\r\n") == ["-ERR Not logged in.", "-ERR Command line is not valid UTF-8."]


def test_too_many_bad_commands_close(pop3: Callable[..., Driver]) -> None:
    driver = pop3(max_bad_commands=3)
    driver.feed(b"A\r\nB\r\nC\r\nD\r\n")
    assert driver.conn.closed and driver.wire.endswith(b"-ERR Too many bad commands, closing connection.\r\n")
    assert len(driver.events) == 3


def test_pipelined_commands_answered_in_order(logged_in: Driver) -> None:
    assert logged_in.lines(b"NOOP\r\nSTAT\r\nDELE 1\r\nLIST 1\r\nRSET\r\nLIST 1\r\n") == [
        "+OK", "+OK 3 1200", "+OK Marked to be deleted.", "-ERR Message is deleted.", "+OK", "+OK 1 120"]


def test_capa_after_login_drops_login_capabilities(logged_in: Driver) -> None:
    lines = logged_in.lines(b"CAPA\r\n")
    assert "USER" not in lines and "STLS" not in lines and not any(x.startswith("SASL") for x in lines)
    assert logged_in.lines(b"USER x\r\n") == ["-ERR Already logged in."]


def test_quit_in_authorization(pop3: Callable[..., Driver]) -> None:
    driver = pop3()
    assert driver.lines(b"QUIT\r\nCAPA\r\n") == ["+OK Logging out."]
    assert driver.conn.closed and driver.conn.state is State.AUTHORIZATION
