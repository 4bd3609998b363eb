"""The README's first command: `hardmail serve` on the embedded default, then swaks AUTH over
STARTTLS into a Maildir that Python's mailbox module reads."""

from __future__ import annotations

import mailbox
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import require_program

HARDMAIL = [sys.executable, "-m", "hardmail"]
ENV = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "HARDMAIL_AUTH__ARGON2__MEMORY_COST": "8192"}


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARDMAIL, *args], input=stdin, capture_output=True, text=True, env=ENV,
                          timeout=120, check=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, int], Path]]:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [*HARDMAIL, "serve", "--data-dir", str(data), "--listen-smtp", "127.0.0.1:0",
         "--listen-submission", "127.0.0.1:0", "--listen-submissions", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV,
    )
    ports: dict[str, int] = {}
    assert process.stdout is not None
    for line in process.stdout:  # the start-up summary: one line per listener, then the data dir
        match = re.match(r"\s+(smtp|submission|submissions)\s+127\.0\.0\.1:(\d+)", line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if "data dir" in line:
            break
    try:
        assert set(ports) == {"smtp", "submission", "submissions"}, f"start-up output lacked listeners: {ports}"
        yield ports, data
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def test_serve_then_swaks_delivers_to_maildir(served: tuple[dict[str, int], Path]) -> None:
    ports, data = served
    swaks = require_program("swaks")
    assert _cli("domain", "add", "example.org", "--data-dir", str(data)).returncode == 0
    added = _cli("account", "add", "alice@example.org", "--password-stdin", "--data-dir", str(data),
                 stdin="a long and careful passphrase\n")
    assert added.returncode == 0, added.stderr
    result = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(ports["submission"]), "--tls", "--auth", "PLAIN",
         "--auth-user", "alice@example.org", "--auth-password", "a long and careful passphrase",
         "--from", "alice@example.org", "--to", "alice@example.org", "--h-Subject", "readme",
         "--timeout", "30"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout
    box = mailbox.Maildir(str(data / "mail" / "example.org" / "alice"), create=False)
    [message] = list(box)
    assert message["Subject"] == "readme"
    assert (data / "tls").is_dir() and (data / "hardmail.db").is_file()
