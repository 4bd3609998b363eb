"""No password, plain or base64, may reach the logs through a full AUTH session."""

from __future__ import annotations

import base64
import logging
import smtplib

import pytest

from support.live import ALICE, ALICE_PASSWORD, BOB, ServerThread, client_tls_context

WRONG_PASSWORD = "Tr0ub4dor&3-not-the-password"


def _forms(user: str, password: str) -> list[str]:
    raw = password.encode()
    return [
        password,
        base64.b64encode(raw).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
        base64.b64encode(f"{user}\0{user}\0{password}".encode()).decode(),
    ]


def test_auth_sessions_leak_no_password(live_server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host, port = live_server.address("submission")
    for mechanism in ("PLAIN", "LOGIN"):
        for password in (ALICE_PASSWORD, WRONG_PASSWORD):
            with smtplib.SMTP(host, port, timeout=30) as client:
                client.starttls(context=client_tls_context())
                client.ehlo()
                client.user, client.password = ALICE, password
                try:
                    client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
                    client.sendmail(ALICE, [BOB], b"From: alice@example.test\r\nSubject: x\r\n\r\nhi\r\n")
                except smtplib.SMTPAuthenticationError:
                    pass
    text = caplog.text
    assert '"event": "smtp.auth"' in text and '"result": "success"' in text and '"result": "failure"' in text
    for password in (ALICE_PASSWORD, WRONG_PASSWORD):
        for form in _forms(ALICE, password):
            assert form not in text, "a password (or its base64 form) reached the logs"
