"""No password or SASL blob, plain or base64, reaches the logs through POP3 logins (USER/PASS,
AUTH PLAIN with an initial response and as a continuation, on both listeners, right and wrong)."""

from __future__ import annotations

import base64
import logging
import poplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context
from support.pop3 import pop3_server, stls_client

WRONG_PASSWORD = "Tr0ub4dor&3-not-the-password"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerThread]:
    with pop3_server(tmp_path / "data", messages=1) as server:
        yield server


def _forms(user: str, password: str) -> list[str]:
    return [password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode()]


def _attempts(live: ServerThread, password: str) -> None:
    plain = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
    for login in ("user", "auth-initial", "auth-continued"):
        for make in (lambda: stls_client(live),
                     lambda: poplib.POP3_SSL(*live.address("pop3s"), context=client_tls_context(), timeout=30)):
            client = make()
            try:
                if login == "user":
                    client.user(ALICE)
                    client.pass_(password)
                elif login == "auth-initial":
                    client._shortcmd(f"AUTH PLAIN {plain}")
                else:
                    client._shortcmd("AUTH PLAIN")
                    client._shortcmd(plain)
                client.quit()
            except poplib.error_proto:
                client.close()


def test_pop3_logins_leak_no_password(live: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _attempts(live, ALICE_PASSWORD)
    _attempts(live, WRONG_PASSWORD)
    text = caplog.text
    assert '"event": "pop3.auth"' in text and '"result": "success"' in text and '"result": "failure"' in text
    for password in (ALICE_PASSWORD, WRONG_PASSWORD):
        for form in _forms(ALICE, password):
            assert form not in text, "a password (or its base64 form) reached the logs"
