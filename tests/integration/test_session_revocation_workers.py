"""With two worker processes, disabling an account by the CLI ends its open sessions on both.

The server is a real ``hardmail serve`` subprocess with ``server.workers = 2``. Sessions are opened
until both workers hold at least one (which worker took a connection is read from /proc: the
worker whose file descriptors include the server end of it); then the CLI disables the account
and every session must get the unprompted 421 within the clients' socket deadline.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from support.cli_process import LoggedServe, free_loopback_port, seed_account
from support.live import EPHEMERAL_LISTEN, client_tls_context

WAIT = 60.0
HARDMAIL = str(Path(sys.executable).parent / "hardmail")
ALICE, PASSWORD = "alice@example.test", "correct horse battery staple 42"
MAX_SESSIONS = 40  # both workers get one long before this (each connection goes to either)

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[LoggedServe, int, list[int], Path]]:
    port = free_loopback_port()
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {**EPHEMERAL_LISTEN, "submission": [f"127.0.0.1:{port}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
    }
    config_path = tmp_path / "hardmail.toml"
    config_path.write_text(tomli_w.dumps(raw))
    seed_account(Config.model_validate(raw), ALICE, PASSWORD)
    running = LoggedServe(config_path, WAIT)
    try:
        pids = running.wait_for("server.workers")["pids"]
        started = 0
        while started < 2:
            running.wait_for("server.start")
            started += 1
        yield running, port, pids, tmp_path / "data"
    finally:
        running.stop()


def _worker_of(client: smtplib.SMTP, server_port: int, pids: list[int]) -> int | None:
    """The pid of the worker holding the server end of ``client``'s connection."""
    client_port = client.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
        if (local, remote) == (server_port, client_port):
            inode = fields[9]
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


def _sign_in(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
    client.starttls(context=client_tls_context())
    client.ehlo()
    client.login(ALICE, PASSWORD)
    return client


def test_disabling_ends_the_sessions_on_every_worker(two_workers: tuple[LoggedServe, int, list[int], Path]) -> None:
    _running, port, pids, data_dir = two_workers
    sessions: list[smtplib.SMTP] = []
    try:
        owners: set[int | None] = set()
        while not set(pids) <= owners:
            assert len(sessions) < MAX_SESSIONS, f"every session landed on the same worker: {owners}"
            sessions.append(_sign_in(port))
            owners.add(_worker_of(sessions[-1], port, pids))
        env = {name: value for name, value in os.environ.items() if not name.startswith("HARDMAIL_")}
        done = subprocess.run([HARDMAIL, "account", "disable", ALICE, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, env=env, cwd=data_dir.parent, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        for client in sessions:
            assert client.getreply() == (421, b"4.7.0 Your session has ended; please sign in again")
    finally:
        for client in sessions:
            with contextlib.suppress(Exception):
                client.close()
