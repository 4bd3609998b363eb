"""The SMTP connection state machine: command order, limits, EHLO contents, line handling."""

from __future__ import annotations

import pytest

from hardmail.core.replies import Reply
from hardmail.proto.smtp.events import (
    NEED_DATA,
    DataStart,
    Help,
    Mail,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    Rset,
    Vrfy,
)
from hardmail.proto.smtp.state import ServerConnection, SmtpOptions


def lines(*commands: str) -> bytes:
    return "".join(f"{c}\r\n" for c in commands).encode()


def ehlo_keywords(driver) -> list[str]:
    return list(driver.ehlo().reply.lines[1:])


# ----- greeting -----------------------------------------------------------------------------------
def test_greeting(session):
    assert session.greeting == b"220 mx.example.org ESMTP hardmail\r\n"
    assert not session.conn.closed


def test_greeting_with_554_closes():
    conn = ServerConnection(SmtpOptions(hostname="mx.example.org"))
    wire = conn.greeting(Reply(554, "5.7.1", "No service for you"))
    assert wire == b"554 5.7.1 No service for you\r\n"
    assert conn.closed
    conn.receive_data(b"EHLO x\r\n")
    assert conn.next_event() is NEED_DATA


# ----- command order ------------------------------------------------------------------------------
def test_mail_before_ehlo(session):
    (exchange,) = session.feed(lines("MAIL FROM:<a@example.net>"))
    assert isinstance(exchange.event, ProtocolError)
    assert (exchange.reply.code, exchange.reply.enhanced) == (503, "5.5.1")


def test_rcpt_before_mail(ready):
    (exchange,) = ready.feed(lines("RCPT TO:<b@example.org>"))
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 503


def test_data_before_mail(ready):
    (exchange,) = ready.feed(lines("DATA"))
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 503


def test_data_without_accepted_recipients(smtp):
    refuse_rcpt = smtp(answer=lambda e: Reply(550, "5.1.1", "no") if isinstance(e, Rcpt) else None)
    refuse_rcpt.ehlo()
    refuse_rcpt.feed(lines("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>", "DATA"))
    assert refuse_rcpt.codes[-3:] == [250, 550, 554]
    assert isinstance(refuse_rcpt.events[-1], ProtocolError)
    assert refuse_rcpt.conn.transaction is not None


def test_data_with_argument_refused(ready):
    ready.envelope()
    (exchange,) = ready.feed(lines("DATA now"))
    assert exchange.reply.code == 501


def test_nested_mail(ready):
    ready.feed(lines("MAIL FROM:<a@example.net>"))
    (exchange,) = ready.feed(lines("MAIL FROM:<c@example.net>"))
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 503


def test_refused_mail_opens_no_transaction(smtp):
    driver = smtp(answer=lambda e: Reply(550, "5.7.1", "no") if isinstance(e, Mail) else None)
    driver.ehlo()
    driver.feed(lines("MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>"))
    assert driver.codes[-2:] == [550, 503]
    assert driver.conn.transaction is None


def test_rset_clears_the_transaction(ready):
    ready.envelope()
    ready.feed(lines("RSET", "RCPT TO:<c@example.org>", "MAIL FROM:<d@example.net>"))
    assert isinstance(ready.events[-3], Rset)
    assert ready.codes[-3:] == [250, 503, 250]


def test_ehlo_resets_the_transaction(ready):
    ready.envelope()
    ready.feed(lines("EHLO again.example.net", "DATA"))
    assert ready.codes[-2:] == [250, 503]
    assert ready.conn.transaction is None
    assert ready.conn.helo == "again.example.net"


def test_helo_after_ehlo_turns_esmtp_off(ready):
    ready.feed(lines("HELO plain.example.net"))
    assert not ready.conn.esmtp


def test_full_transaction_state(ready):
    ready.envelope("a@example.net", "b@example.org", "c@example.org")
    assert ready.conn.transaction is not None
    assert ready.conn.transaction.recipients == 2
    (exchange,) = ready.feed(lines("DATA"))
    assert isinstance(exchange.event, DataStart)
    assert exchange.wire == b"354 End data with <CR><LF>.<CR><LF>\r\n"


# ----- EHLO reply contents ------------------------------------------------------------------------
def test_ehlo_reply_lines(session):
    exchange = session.ehlo("client.example.net")
    assert exchange.reply.code == 250
    assert exchange.reply.lines[0] == "mx.example.org greets client.example.net"
    keywords = exchange.reply.lines[1:]
    for keyword in ["PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING",
                    "DSN", "STARTTLS"]:
        assert keyword in keywords
    assert not any(k.startswith("AUTH") for k in keywords)
    assert exchange.wire.startswith(b"250-mx.example.org greets client.example.net\r\n250-PIPELINING\r\n")
    assert exchange.wire.endswith(b"250 STARTTLS\r\n")


def test_ehlo_size_follows_the_option(smtp):
    assert "SIZE 1000" in ehlo_keywords(smtp(max_message_size=1000))


def test_ehlo_no_starttls_inside_tls_but_auth(smtp):
    keywords = ehlo_keywords(smtp(tls_active=True, auth_mechanisms=("PLAIN", "LOGIN")))
    assert "STARTTLS" not in keywords
    assert "AUTH PLAIN LOGIN" in keywords


def test_ehlo_no_auth_before_tls(smtp):
    keywords = ehlo_keywords(smtp(auth_mechanisms=("PLAIN", "LOGIN")))
    assert "STARTTLS" in keywords
    assert not any(k.startswith("AUTH") for k in keywords)


def test_ehlo_auth_in_clear_only_when_allowed(smtp):
    keywords = ehlo_keywords(smtp(auth_mechanisms=("PLAIN",), auth_requires_tls=False))
    assert "AUTH PLAIN" in keywords


@pytest.mark.parametrize("tls", [True, False])
def test_ehlo_never_auth_without_mechanisms(smtp, tls):
    keywords = ehlo_keywords(smtp(tls_active=tls, auth_requires_tls=False))
    assert not any(k.startswith("AUTH") for k in keywords)


def test_ehlo_no_starttls_when_unavailable(smtp):
    assert "STARTTLS" not in ehlo_keywords(smtp(starttls_available=False))


# ----- limits -------------------------------------------------------------------------------------
def test_size_over_limit_at_mail(smtp):
    driver = smtp(max_message_size=1000)
    driver.ehlo()
    driver.feed(lines("MAIL FROM:<a@example.net> SIZE=1001", "MAIL FROM:<a@example.net> SIZE=1000"))
    assert isinstance(driver.events[-2], ProtocolError)
    assert (driver.log[-2].reply.code, driver.log[-2].reply.enhanced) == (552, "5.3.4")
    assert isinstance(driver.events[-1], Mail)


def test_max_recipients(smtp):
    driver = smtp(max_recipients=2)
    driver.ehlo()
    driver.feed(lines("MAIL FROM:<a@example.net>", *(f"RCPT TO:<r{i}@example.org>" for i in range(3))))
    assert driver.codes[-3:] == [250, 250, 452]
    assert driver.log[-1].reply.enhanced == "4.5.3"
    assert driver.conn.transaction is not None
    assert driver.conn.transaction.recipients == 2


def test_refused_recipients_do_not_count_towards_the_limit(smtp):
    answers = iter([Reply(550, "5.1.1", "no"), None, None])
    driver = smtp(answer=lambda e: next(answers) if isinstance(e, Rcpt) else None, max_recipients=2)
    driver.ehlo()
    driver.feed(lines("MAIL FROM:<a@example.net>", *(f"RCPT TO:<r{i}@example.org>" for i in range(3))))
    assert driver.codes[-3:] == [550, 250, 250]


def test_max_commands(smtp):
    driver = smtp(max_commands=3)
    driver.feed(lines("NOOP", "NOOP", "NOOP", "NOOP", "NOOP"))
    assert driver.codes == [250, 250, 250, 421]
    assert isinstance(driver.events[-1], ProtocolError)
    assert driver.events[-1].fatal
    assert driver.conn.closed


def test_max_bad_commands(smtp):
    driver = smtp(max_bad_commands=3)
    driver.feed(lines("FOO", "NOOP", "BAR", "BAZ", "NOOP"))
    assert driver.codes == [500, 250, 500, 500]
    assert driver.log[1].wire == b"250 2.0.0 OK\r\n"
    assert driver.last.wire.endswith(b"421 4.7.0 Too many errors, closing connection\r\n")
    assert driver.last.wire.startswith(b"500 5.5.2 ")
    assert driver.conn.closed


def test_session_refusals_count_as_errors(smtp):
    driver = smtp(answer=lambda e: Reply(550, "5.1.1", "no") if isinstance(e, Rcpt) else None, max_bad_commands=2)
    driver.ehlo()
    driver.feed(lines("MAIL FROM:<a@example.net>", "RCPT TO:<x@example.org>", "RCPT TO:<y@example.org>"))
    assert driver.conn.closed
    assert b"421 4.7.0" in driver.last.wire


# ----- commands and lines -------------------------------------------------------------------------
def test_unknown_command(session):
    (exchange,) = session.feed(lines("FROBNICATE now"))
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.event.command == ""  # never echoed: it may be a stray AUTH response
    assert exchange.wire == b"500 5.5.2 Command not recognized\r\n"


def test_empty_line_is_unknown(session):
    (exchange,) = session.feed(b"\r\n")
    assert exchange.reply.code == 500


def test_too_long_line_then_next_line_works(session):
    data = b"NOOP " + b"x" * 1200 + b"\r\nNOOP\r\n"
    exchanges = session.feed(data)
    assert [x.reply.code for x in exchanges] == [500, 250]
    assert exchanges[0].reply.enhanced == "5.5.6"
    assert isinstance(exchanges[1].event, Noop)


def test_line_of_exactly_the_limit_is_accepted(session):
    line = b"NOOP " + b"x" * (1000 - 7) + b"\r\n"
    assert len(line) == 1000
    (exchange,) = session.feed(line)
    assert exchange.reply.code == 250
    (exchange,) = session.feed(b"NOOP " + b"x" * (1001 - 7) + b"\r\n")
    assert exchange.reply.code == 500


def test_very_long_line_is_not_buffered(session):
    session.feed(b"X" * 5000)
    assert len(session.conn._buffer) <= 1001
    (exchange,) = session.feed(b"\r\n")
    assert exchange.reply.enhanced == "5.5.6"


def test_auth_line_up_to_12288_octets(tls_auth):
    driver = tls_auth()
    line = b"AUTH PLAIN " + b"A" * (12288 - 13) + b"\r\n"
    assert len(line) == 12288
    (exchange,) = driver.feed(line)
    assert exchange.reply.code == 334
    assert exchange.event.initial_response == "A" * (12288 - 13)


def test_auth_line_over_12288_octets(tls_auth):
    (exchange,) = tls_auth().feed(b"AUTH PLAIN " + b"A" * 12288 + b"\r\n")
    assert exchange.reply.enhanced == "5.5.6"


@pytest.mark.parametrize("data", [b"NOOP\n", b"NO\rOP\r\n", b"NOOP\r\r\n"])
def test_command_lines_need_crlf(session, data):
    (exchange,) = session.feed(data)
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 501


def test_pipelining_gives_events_in_order(session):
    session.feed(lines("EHLO c.example.net", "MAIL FROM:<a@example.net>", "RCPT TO:<b@example.org>",
                       "RCPT TO:<c@example.org>", "RSET", "NOOP", "HELP", "VRFY someone", "QUIT"))
    assert [type(e).__name__ for e in session.events] == [
        "Helo", "Mail", "Rcpt", "Rcpt", "Rset", "Noop", "Help", "Vrfy", "Quit"]


def test_quit(session):
    (exchange,) = session.feed(lines("QUIT", "NOOP"))
    assert isinstance(exchange.event, Quit)
    assert exchange.wire == b"221 2.0.0 Bye\r\n"
    assert session.conn.closed


def test_vrfy_252(session):
    (exchange,) = session.feed(lines("VRFY postmaster"))
    assert isinstance(exchange.event, Vrfy)
    assert exchange.event.argument == "postmaster"
    assert exchange.reply.code == 252


def test_expn_not_available(session):
    (exchange,) = session.feed(lines("EXPN staff"))
    assert exchange.reply.code == 502


def test_help(session):
    (exchange,) = session.feed(lines("HELP"))
    assert isinstance(exchange.event, Help)
    assert exchange.wire.startswith(b"214-2.0.0 ")


def test_421_reply_closes(smtp):
    driver = smtp(answer=lambda e: Reply(421, "4.3.2", "shutting down"))
    driver.feed(lines("NOOP", "NOOP"))
    assert driver.codes == [421]
    assert driver.conn.closed


def test_next_event_twice_without_send_raises():
    conn = ServerConnection(SmtpOptions(hostname="mx"))
    conn.receive_data(b"NOOP\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), Noop)
    with pytest.raises(RuntimeError):
        conn.next_event()


def test_send_without_event_raises():
    conn = ServerConnection(SmtpOptions(hostname="mx"))
    with pytest.raises(RuntimeError):
        conn.send(Reply(250, None, "OK"))


def test_counters(session):
    session.feed(lines("NOOP", "BOGUS", "NOOP"))
    assert session.conn.commands == 3
    assert session.conn.errors == 1
