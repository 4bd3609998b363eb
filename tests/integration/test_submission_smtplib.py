"""Submission with Python's smtplib over real sockets: STARTTLS on 587, implicit TLS on 465, AUTH."""

from __future__ import annotations

import smtplib

import pytest

from support.live import ALICE, ALICE_PASSWORD, BOB, ServerThread, client_tls_context

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: hello\r\n"
    b"Date: Sun, 29 Nov 2026 15:00:00 +0000\r\n"
    b"Message-ID: <test-1@example.test>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".leading dot survives\r\n"
    b"\r\n"
    b"bye\r\n"
)


def _submit_starttls(server: ServerThread, mechanism: str) -> None:
    host, port = server.address("submission")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("client.example")
        client.starttls(context=client_tls_context())
        client.ehlo("client.example")
        client.user, client.password = ALICE, ALICE_PASSWORD
        code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert code == 235
        refused = client.sendmail(ALICE, [BOB], MESSAGE)
        assert refused == {}


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_auth_delivers_byte_for_byte(live_server: ServerThread, mechanism: str) -> None:
    _submit_starttls(live_server, mechanism)
    [stored] = live_server.messages(BOB)
    assert stored.startswith(b"Received: from client.example")
    assert stored.endswith(MESSAGE.split(b"\r\n\r\n", 1)[1])
    assert b"with ESMTPSA" in stored
    assert b"(Authenticated sender: alice@example.test)" in stored
    assert stored[stored.index(b"From: Alice"):] == MESSAGE
    [msg] = list(live_server.maildir(BOB))
    assert msg["Subject"] == "hello"


def test_implicit_tls_465(live_server: ServerThread) -> None:
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        assert client.sendmail(ALICE, [BOB], MESSAGE) == {}
    [stored] = live_server.messages(BOB)
    assert stored.endswith(MESSAGE)
    assert b"TLSv1." in stored
