"""Memory stays bounded while big messages stream in (issue 11, point 12).

A real ``hardmail serve`` (one worker, its Maildir writer process) takes four 40 MB messages at
once; the resident memory of its whole process tree (the sum of the processes' PSS, from /proc)
may grow by less than 64 MB, where holding the messages in memory took several times their size.
This asserts memory, not time: the sampler only looks while the messages are in flight.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from support.cli_process import LoggedServe, free_loopback_port, seed_account
from support.live import EPHEMERAL_LISTEN

WAIT = 120.0
SIZE = 40 * 1024 * 1024
CONCURRENT = 4
GROWTH_LIMIT = 64 * 1024 * 1024
BOB = "bob@example.test"


def _tree(pid: int) -> list[int]:
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found += _tree(int(entry.name))
    return found


def tree_pss(pid: int) -> int:
    total = 0
    for member in _tree(pid):
        try:
            lines = Path(f"/proc/{member}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        total += next(int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss:"))
    return total


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LoggedServe, int, Config]]:
    port = free_loopback_port()
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 1},
        "listen": {**EPHEMERAL_LISTEN, "smtp": [f"127.0.0.1:{port}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "smtp": {"max_message_size": 50 * 1024 * 1024},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
    }
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    config = Config.model_validate(raw)
    seed_account(config, BOB, "correct horse battery staple 42")
    running = LoggedServe(path, WAIT)
    try:
        running.wait_for("server.start")
        yield running, port, config
    finally:
        running.stop()


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def send(port: int, content: bytes, codes: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        _reply(sock)
        for line in (b"EHLO client.example.net", b"MAIL FROM:<a@remote.example>", b"RCPT TO:<" + BOB.encode() + b">",
                     b"DATA"):
            sock.sendall(line + b"\r\n")
            _reply(sock)
        sock.sendall(content)
        sock.sendall(b".\r\n")
        codes.append(_reply(sock)[:3])


def message(size: int) -> bytes:
    line = b"abcdefghijklmnopqrstuvwxyz0123456789 abcdefghijklmnopqrstuvwxyz0123456789\r\n"
    head = b"From: a@remote.example\r\nSubject: big\r\n\r\n"
    return head + line * ((size - len(head)) // len(line))


def test_four_concurrent_40_mb_messages_keep_the_server_memory_bounded(server: tuple[LoggedServe, int, Config]) -> None:
    running, port, config = server
    codes: list[bytes] = []
    send(port, message(10_000), codes)  # warm-up: the worker's Maildir writer process is running now
    before = tree_pss(running.proc.pid)
    content = message(SIZE)
    peak = before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_pss(running.proc.pid))
            stop.wait(0.02)  # the sampling cadence; nothing waits on it

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=send, args=(port, content, codes)) for _ in range(CONCURRENT)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(WAIT * 2)
    stop.set()
    sampler.join()
    peak = max(peak, tree_pss(running.proc.pid))
    assert codes == [b"250"] * (CONCURRENT + 1)
    new = config.maildir_root / "example.test" / "bob" / "new"
    sizes = sorted(path.stat().st_size for path in new.iterdir())
    assert all(size > SIZE for size in sizes[-CONCURRENT:])  # each with its Received: line on top
    growth = peak - before
    assert growth < GROWTH_LIMIT, f"server memory grew by {growth / 2**20:.0f} MB for {CONCURRENT} x 40 MB"
