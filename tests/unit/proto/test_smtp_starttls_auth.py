"""STARTTLS (RFC 3207, CVE-2011-0411) and the AUTH exchange (RFC 4954) in the SMTP core."""

from __future__ import annotations

from hardmail.core.replies import AUTH_OK, Reply
from hardmail.proto.smtp.events import NEED_DATA, Auth, AuthResponse, Helo, Mail, ProtocolError, StartTls


def lines(*commands: str) -> bytes:
    return "".join(f"{c}\r\n" for c in commands).encode()


# ----- STARTTLS -----------------------------------------------------------------------------------
def test_starttls_then_need_data_until_start_tls(ready):
    (exchange,) = ready.feed(lines("STARTTLS"))
    assert isinstance(exchange.event, StartTls)
    assert exchange.wire == b"220 2.0.0 Ready to start TLS\r\n"
    assert ready.conn.awaiting_tls
    ready.feed(lines("NOOP"))
    assert ready.conn.next_event() is NEED_DATA
    assert len(ready.log) == 1 + 1  # EHLO and STARTTLS only
    ready.conn.start_tls()
    assert not ready.conn.awaiting_tls
    assert ready.conn.tls_active


def test_pipelined_commands_after_starttls_are_discarded(ready):
    ready.feed(b"STARTTLS\r\nMAIL FROM:<a@example.net>\r\n")
    assert isinstance(ready.events[-1], StartTls)
    ready.conn.start_tls()
    ready.feed(lines("NOOP"))
    assert not ready.of_type(Mail)
    assert [type(e).__name__ for e in ready.events] == ["Helo", "StartTls", "Noop"]


def test_client_must_ehlo_again_after_start_tls(ready):
    ready.envelope()
    ready.feed(lines("RSET", "STARTTLS"))
    ready.conn.start_tls()
    assert ready.conn.helo is None
    ready.feed(lines("MAIL FROM:<a@example.net>"))
    assert ready.codes[-1] == 503
    exchange = ready.ehlo()
    assert isinstance(exchange.event, Helo)
    assert "STARTTLS" not in exchange.reply.lines
    ready.feed(lines("MAIL FROM:<a@example.net>"))
    assert ready.codes[-1] == 250


def test_starttls_when_tls_active(smtp):
    driver = smtp(tls_active=True)
    driver.ehlo()
    (exchange,) = driver.feed(lines("STARTTLS"))
    assert isinstance(exchange.event, ProtocolError)
    assert exchange.reply.code == 503


def test_starttls_twice(ready):
    ready.feed(lines("STARTTLS"))
    ready.conn.start_tls()
    ready.ehlo()
    (exchange,) = ready.feed(lines("STARTTLS"))
    assert exchange.reply.code == 503


def test_starttls_not_available(smtp):
    driver = smtp(starttls_available=False)
    driver.ehlo()
    (exchange,) = driver.feed(lines("STARTTLS"))
    assert exchange.reply.code == 454


def test_starttls_needs_ehlo_and_no_argument(session):
    session.feed(lines("STARTTLS"))
    session.ehlo()
    session.feed(lines("STARTTLS now"))
    assert session.codes == [503, 250, 501]


def test_starttls_refused_by_session_keeps_plain_session(smtp):
    driver = smtp(answer=lambda e: Reply(454, "4.7.0", "no TLS") if isinstance(e, StartTls) else None)
    driver.ehlo()
    driver.feed(lines("STARTTLS", "NOOP"))
    assert driver.codes[-2:] == [454, 250]
    assert not driver.conn.awaiting_tls
    assert not driver.conn.tls_active


def test_start_tls_forgets_clear_text_authentication(smtp):
    driver = smtp(auth_mechanisms=("PLAIN",), auth_requires_tls=False,
                  answer=lambda e: AUTH_OK if isinstance(e, Auth) else None)
    driver.ehlo()
    driver.feed(lines("AUTH PLAIN AGEAYg=="))
    assert driver.conn.authenticated
    driver.feed(lines("STARTTLS"))
    driver.conn.start_tls()
    assert not driver.conn.authenticated


# ----- AUTH ---------------------------------------------------------------------------------------
def test_auth_in_the_clear_refused_538(smtp):
    driver = smtp(auth_mechanisms=("PLAIN", "LOGIN"))
    driver.ehlo()
    (exchange,) = driver.feed(lines("AUTH PLAIN"))
    assert isinstance(exchange.event, ProtocolError)
    assert (exchange.reply.code, exchange.reply.enhanced) == (538, "5.7.11")


def test_auth_without_mechanisms_502(tls_auth):
    (exchange,) = tls_auth(auth_mechanisms=()).feed(lines("AUTH PLAIN"))
    assert exchange.reply.code == 502


def test_auth_in_the_clear_is_538_even_without_mechanisms(ready):
    (exchange,) = ready.feed(lines("AUTH PLAIN"))
    assert (exchange.reply.code, exchange.reply.enhanced) == (538, "5.7.11")


def test_auth_unknown_mechanism_504(tls_auth):
    (exchange,) = tls_auth().feed(lines("AUTH CRAM-MD5"))
    assert (exchange.reply.code, exchange.reply.enhanced) == (504, "5.5.4")


def test_auth_mechanism_case_insensitive_in_options(tls_auth):
    (exchange,) = tls_auth(auth_mechanisms=("plain",)).feed(lines("AUTH PLAIN"))
    assert isinstance(exchange.event, Auth)


def test_auth_before_ehlo(smtp):
    driver = smtp(tls_active=True, auth_mechanisms=("PLAIN",))
    (exchange,) = driver.feed(lines("AUTH PLAIN"))
    assert exchange.reply.code == 503


def test_auth_during_transaction_503(tls_auth):
    driver = tls_auth()
    driver.feed(lines("MAIL FROM:<a@example.net>", "AUTH PLAIN"))
    assert driver.codes[-1] == 503
    assert isinstance(driver.events[-1], ProtocolError)


def test_auth_exchange_success(tls_auth):
    def answer(event):
        if isinstance(event, Auth):
            return Reply(334, None, "VXNlcm5hbWU6")
        if isinstance(event, AuthResponse) and event.data == "dXNlcg==":
            return Reply(334, None, "UGFzc3dvcmQ6")
        if isinstance(event, AuthResponse):
            return AUTH_OK
        return None

    driver = tls_auth(answer=answer)
    driver.feed(lines("AUTH LOGIN", "dXNlcg==", "c2VjcmV0"))
    assert [type(e).__name__ for e in driver.events[-3:]] == ["Auth", "AuthResponse", "AuthResponse"]
    assert driver.log[-3].wire == b"334 VXNlcm5hbWU6\r\n"
    assert driver.last.wire == b"235 2.7.0 Authentication successful\r\n"
    assert driver.conn.authenticated
    assert not any(k.startswith("AUTH") for k in driver.ehlo().reply.lines)
    (again,) = driver.feed(lines("AUTH PLAIN"))
    assert (again.reply.code, again.reply.enhanced) == (503, "5.5.1")


def test_auth_response_lines_are_not_commands(tls_auth):
    driver = tls_auth()
    driver.feed(lines("AUTH PLAIN", "QUIT"))
    event = driver.events[-1]
    assert isinstance(event, AuthResponse)
    assert event.data == "QUIT"
    assert not driver.conn.closed


def test_auth_cancel(tls_auth):
    driver = tls_auth()
    driver.feed(lines("AUTH PLAIN", "*", "NOOP"))
    cancel = driver.log[-2]
    assert isinstance(cancel.event, AuthResponse)
    assert cancel.event.cancelled
    assert cancel.wire == b"501 5.0.0 Authentication cancelled\r\n"
    assert driver.codes[-1] == 250
    assert not driver.conn.authenticated


def test_auth_failure_returns_to_commands(tls_auth):
    driver = tls_auth(answer=lambda e: Reply(535, "5.7.8", "bad") if isinstance(e, AuthResponse) else None)
    driver.feed(lines("AUTH PLAIN", "AGEAYg==", "NOOP"))
    assert driver.codes[-3:] == [334, 535, 250]
    assert not driver.conn.authenticated


def test_bad_line_during_auth_is_a_cancelled_response(tls_auth):
    driver = tls_auth()
    driver.feed(b"AUTH PLAIN\r\nAGEAYg==\n")
    event = driver.events[-1]
    assert isinstance(event, AuthResponse)
    assert event.cancelled
    assert driver.codes[-1] == 501


def test_auth_response_line_up_to_12288(tls_auth):
    driver = tls_auth()
    driver.feed(lines("AUTH PLAIN"))
    driver.feed(b"A" * 12286 + b"\r\n")
    event = driver.events[-1]
    assert isinstance(event, AuthResponse)
    assert len(event.data) == 12286


def test_auth_event_repr_hides_secrets(tls_auth):
    driver = tls_auth()
    driver.feed(lines("AUTH PLAIN AGFsaWNlAHMzY3IzdA==", "c2VjcmV0LXJlc3BvbnNl"))
    text = " ".join(repr(e) for e in driver.events)
    assert "AGFsaWNlAHMzY3IzdA==" not in text
    assert "c2VjcmV0LXJlc3BvbnNl" not in text
