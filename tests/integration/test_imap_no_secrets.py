"""No password, plain or base64, reaches the logs through IMAP logins: LOGIN, AUTHENTICATE PLAIN
with and without SASL-IR, SCRAM-SHA-256 (scramp as the client), malformed and cancelled exchanges,
with right and wrong passwords, and debug logging on."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from scramp import ScramClient

from support.imap import RawImap
from support.live import ALICE, ALICE_PASSWORD, ServerThread, running_server, server_config

WRONG = "Tr0ub4dor&3-not-the-imap-password"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as live:
        yield live


def _forms(password: str) -> list[str]:
    return [password, base64.b64encode(password.encode()).decode(),
            base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode(),
            f'"{password}"']


def _scram(client: RawImap, password: str) -> bytes:
    scram = ScramClient(["SCRAM-SHA-256"], ALICE, password)
    first = base64.b64encode(scram.get_client_first().encode()).decode()
    client.send(f"s AUTHENTICATE SCRAM-SHA-256 {first}\r\n".encode())
    challenge = client.line()
    assert challenge.startswith(b"+ "), challenge
    scram.set_server_first(base64.b64decode(challenge[2:].strip()).decode())
    client.send(base64.b64encode(scram.get_client_final().encode()) + b"\r\n")
    answer = client.line()
    if answer.startswith(b"+ "):  # the server's final message: an empty response ends the exchange
        client.send(b"\r\n")
        answer = client.line()
    return answer


def test_imap_logins_leak_no_password(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answers = []
    for password in (ALICE_PASSWORD, WRONG):
        plain = base64.b64encode(f"\0{ALICE}\0{password}".encode()).decode()
        for steps in ([f'LOGIN "{ALICE}" "{password}"'], [f"AUTHENTICATE PLAIN {plain}"],
                      ["AUTHENTICATE PLAIN", plain], ["AUTHENTICATE PLAIN", "*"], [f"LOGIN {ALICE} {password}x y"]):
            client = RawImap(server.address("imaps"), tls=True)
            try:
                client.line()
                client.send(f"a {steps[0]}\r\n".encode())
                for step in steps[1:]:
                    assert client.line().startswith(b"+ ")
                    client.send(step.encode() + b"\r\n")
                answers.append(client.until("a")[1])
            finally:
                client.close()
        client = RawImap(server.address("imaps"), tls=True)
        try:
            client.line()
            answers.append(_scram(client, password))
        finally:
            client.close()
    assert any(a.startswith(b"a OK") for a in answers) and any(b"AUTHENTICATIONFAILED" in a for a in answers)
    assert any(a.startswith(b"s OK") for a in answers)
    text = caplog.text
    assert '"event": "imap.auth"' in text and '"result": "success"' in text and '"result": "failure"' in text
    for password in (ALICE_PASSWORD, WRONG):
        for form in _forms(password):
            assert form not in text, "a password (or its base64 form) reached the logs"


def test_a_password_sent_as_a_command_is_not_logged(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    """A user typing the password at the wrong moment (or a client that sends a refused literal's
    data anyway) sends it as a command line: the BAD names no command, in the log or the reply."""
    caplog.set_level(logging.DEBUG)
    secret = "Zebra7Quartz9Lantern"
    client = RawImap(server.address("imaps"), tls=True)
    try:
        client.line()
        client.send(f"a {secret}\r\nb x {secret}\r\n".encode())
        answers = [client.until("a")[1], client.until("b")[1]]
    finally:
        client.close()
    assert all(answer.split()[1] == b"BAD" for answer in answers), answers
    assert all(secret.lower().encode() not in answer.lower() for answer in answers), answers
    assert '"event": "imap.bad"' in caplog.text
    assert secret.lower() not in caplog.text.lower(), "a password sent as a command reached the logs"
