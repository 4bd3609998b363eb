"""POP3 under ``hardmail serve`` with two worker processes: both serve the pop3 listener (STLS),
the INBOX lock holds whichever worker a connection lands on (``-ERR [IN-USE]``), and what one
session deletes at QUIT is gone for the next one, in any worker.

(The pop3s listener is not used here: under ``hardmail serve`` the event loop is uvloop, where an
implicit-TLS connection's ClientHello can be read before the channel pauses reading and is then
dropped by ``Channel.start_tls``; SMTP's submissions listener shows the same. Reported.)
"""

from __future__ import annotations

import poplib
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from support.cli_process import LoggedServe, free_loopback_port, seed_account
from support.live import EPHEMERAL_LISTEN, client_tls_context

WAIT = 60.0
BOB = "bob@example.test"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, int]]:
    smtp, pop3 = free_loopback_port(), free_loopback_port()
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {**EPHEMERAL_LISTEN, "smtp": [f"127.0.0.1:{smtp}"], "pop3": [f"127.0.0.1:{pop3}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
    }
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    seed_account(Config.model_validate(raw), BOB, PASSWORD)
    running = LoggedServe(path, WAIT, kill=True)
    try:
        pids = running.wait_for("server.workers")["pids"]
        assert {running.wait_for("server.worker_ready")["pid"] for _ in pids} == set(pids)
        yield smtp, pop3
    finally:
        running.stop()


def _login(port: int) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", port, timeout=WAIT)
    client.stls(client_tls_context())
    client.user(BOB)
    client.pass_(PASSWORD)
    return client


def test_lock_and_deletions_hold_across_workers(served: tuple[int, int]) -> None:
    smtp, pop3 = served
    with smtplib.SMTP("127.0.0.1", smtp, timeout=WAIT) as client:
        for n in range(3):
            client.sendmail("alice@example.net", [BOB], f"Subject: {n}\r\n\r\nhello\r\n")
    holder = _login(pop3)
    assert holder.stat()[0] == 3
    for _ in range(6):  # spread over both workers by the kernel
        with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
            _login(pop3)
    holder.dele(2)
    assert holder.quit() == b"+OK Logging out, messages deleted."
    counts = []
    for _ in range(4):
        client = _login(pop3)
        counts.append(client.stat()[0])
        client.quit()
    assert counts == [2, 2, 2, 2]
