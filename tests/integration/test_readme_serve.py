"""The README's first command (`./scripts/serve`) on the embedded default, then swaks AUTH over
STARTTLS into a Maildir that Python's mailbox module reads; SIGHUP reloads TLS without dropping
the sessions that are open."""

from __future__ import annotations

import mailbox
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.server.listener import KINDS
from support.cli_process import EPHEMERAL_LISTENERS
from support.live import RawClient, require_program

ROOT = Path(__file__).resolve().parents[2]
HARDMAIL = [sys.executable, "-m", "hardmail"]
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HARDMAIL_AUTH__ARGON2__MEMORY_COST": "8192"}


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARDMAIL, *args], input=stdin, capture_output=True, text=True, env=ENV,
                          timeout=120, check=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, int], Path, int]]:
    data = tmp_path / "data"
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "serve"), "--data-dir", str(data), *EPHEMERAL_LISTENERS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )
    ports: dict[str, int] = {}
    printed: set[str] = set()
    assert process.stdout is not None
    for line in process.stdout:  # the start-up summary: one line per listener, then the data dir
        match = re.match(r"\s+(smtp|submission|submissions|imap|imaps|pop3|pop3s)\s+127\.0\.0\.1:(\d+)", line)
        if match:
            printed.add(match.group(1))
            if "not served" not in line:
                ports[match.group(1)] = int(match.group(2))
        if "data dir" in line:
            break
    try:
        assert printed == set(KINDS), f"start-up output lacked listeners: {printed}"
        assert {"smtp", "submission", "submissions"} <= set(ports), f"start-up output lacked listeners: {ports}"
        yield ports, data, process.pid  # scripts/serve execs hardmail: same process
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def _swaks(port: int, subject: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_program("swaks"), "--server", "127.0.0.1", "--port", str(port), "--tls", "--auth", "PLAIN",
         "--auth-user", "alice@example.org", "--auth-password", "a long and careful passphrase",
         "--from", "alice@example.org", "--to", "alice@example.org", "--h-Subject", subject, "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_serve_then_swaks_delivers_to_maildir(served: tuple[dict[str, int], Path, int]) -> None:
    ports, data, _ = served
    assert _cli("domain", "add", "example.org", "--data-dir", str(data)).returncode == 0
    added = _cli("account", "add", "alice@example.org", "--password-stdin", "--data-dir", str(data),
                 stdin="a long and careful passphrase\n")
    assert added.returncode == 0, added.stderr
    result = _swaks(ports["submission"], "readme")
    assert result.returncode == 0, result.stdout
    box = mailbox.Maildir(str(data / "mail" / "example.org" / "alice"), create=False)
    [message] = list(box)
    assert message["Subject"] == "readme"
    assert (data / "tls").is_dir() and (data / "hardmail.db").is_file()


def _certificate(port: int) -> bytes:
    with RawClient(("127.0.0.1", port), tls_on_connect=True).sock as sock:
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return der


def _wait_for_new_certificate(port: int, old: bytes, tls_dir: Path, attempts: int = 50) -> bytes:
    """New handshakes until one shows a certificate other than ``old`` (the reload runs in the server's
    loop). It first waits for the new pair on disk, so that the handshakes stay far below the
    per-address connection rate limit however slow the machine is."""
    deadline = time.monotonic() + 60
    while len(list(tls_dir.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the file system for the server's reload, bounded by the deadline
    for _ in range(attempts):
        current = _certificate(port)
        if current != old:
            return current
    return old


def test_sighup_reloads_tls_and_keeps_sessions(served: tuple[dict[str, int], Path, int]) -> None:
    ports, data, pid = served
    assert _cli("domain", "add", "example.org", "--data-dir", str(data)).returncode == 0
    _cli("account", "add", "alice@example.org", "--password-stdin", "--data-dir", str(data),
         stdin="a long and careful passphrase\n")
    client = RawClient(("127.0.0.1", ports["submissions"]), tls_on_connect=True)
    assert client.read_reply()[0] == 220
    assert isinstance(client.sock, ssl.SSLSocket)
    old_certificate = client.sock.getpeercert(binary_form=True)
    assert old_certificate is not None
    for path in (data / "tls").iterdir():  # the server makes a new self-signed pair at reload
        path.unlink()
    os.kill(pid, signal.SIGHUP)
    assert client.command("EHLO still.here")[0] == 250  # the open session survives the reload
    fresh = _wait_for_new_certificate(ports["submissions"], old_certificate, data / "tls")
    assert fresh != old_certificate
    assert _swaks(ports["submission"], "after reload").returncode == 0
    client.close()
