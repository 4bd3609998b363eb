"""Real mail clients over loopback: swaks and msmtp, STARTTLS on submission and implicit TLS on 465."""

from __future__ import annotations

import subprocess

import pytest

from support.live import ALICE, ALICE_PASSWORD, BOB, ServerThread, require_program


def _swaks(server: ServerThread, kind: str, *extra: str) -> subprocess.CompletedProcess[str]:
    swaks = require_program("swaks")
    host, port = server.address(kind)
    command = [
        swaks, "--server", host, "--port", str(port), "--from", ALICE, "--to", BOB,
        "--auth-user", ALICE, "--auth-password", ALICE_PASSWORD, "--h-Subject", f"swaks {kind}",
        "--body", "Sent by swaks.", "--helo", "swaks.client.example", "--timeout", "30", *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_submission(live_server: ServerThread, mechanism: str) -> None:
    result = _swaks(live_server, "submission", "--tls", "--auth", mechanism)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<~  235 2.7.0" in result.stdout
    [message] = list(live_server.maildir(BOB))
    assert message["Subject"] == "swaks submission"
    assert "Sent by swaks." in message.get_payload()


def test_swaks_implicit_tls(live_server: ServerThread) -> None:
    result = _swaks(live_server, "submissions", "--tls-on-connect", "--auth", "PLAIN")
    assert result.returncode == 0, result.stdout + result.stderr
    [message] = list(live_server.maildir(BOB))
    assert message["Subject"] == "swaks submissions"


def test_swaks_refuses_plaintext_auth(live_server: ServerThread) -> None:
    result = _swaks(live_server, "submission", "--auth", "PLAIN")
    assert result.returncode != 0
    assert "<~  235 " not in result.stdout
    assert live_server.messages(BOB) == []


def test_msmtp_starttls_submission(live_server: ServerThread) -> None:
    msmtp = require_program("msmtp")
    host, port = live_server.address("submission")
    message = f"From: {ALICE}\nTo: {BOB}\nSubject: msmtp\n\nSent by msmtp.\n"
    result = subprocess.run(
        [msmtp, f"--host={host}", f"--port={port}", "--tls=on", "--tls-starttls=on", "--tls-certcheck=off",
         "--auth=plain", f"--user={ALICE}", f"--passwordeval=echo '{ALICE_PASSWORD}'", f"--from={ALICE}", BOB],
        input=message, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    [stored] = list(live_server.maildir(BOB))
    assert stored["Subject"] == "msmtp"
