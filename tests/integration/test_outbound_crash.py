"""Crash safety of the outbound queue: SIGKILL the server in the middle of a delivery run, restart it,
and every message arrives exactly once (or is still queued), never lost.

The server runs as a real subprocess (``python -m hardmail serve``). The receiving server holds the
third message without answering until the test has killed the sender, so the kill lands at a known
point without any timing: two messages acknowledged, one in flight, two not yet sent.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.queue import DeliveryQueue
from hardmail.delivery.spool import OutboundSpool
from hardmail.store import open_store
from support.dns_server import LoopbackDnsServer
from support.live import EPHEMERAL_LISTEN
from support.smtp_sink import Received, Sink, free_port_on

MX = "127.0.0.2"
SUBJECTS = [f"crash {n}" for n in range(5)]


def _config(tmp_path: Path, dns_port: int, port: int) -> Path:
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data")},
        "listen": EPHEMERAL_LISTEN,
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "dns": {"nameservers": ["127.0.0.1"], "port": dns_port, "timeout": 10},
        "outbound": {"port": port, "connect_timeout": 10, "command_timeout": 60, "data_timeout": 60,
                     "refuse_non_public": False},
        "queue": {"workers": 1, "per_domain_connections": 1},
    }
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


async def _fill_queue(config: Config) -> None:
    store = await open_store(config.database_url)
    try:
        await store.migrate()
        queue = DeliveryQueue(store.queue, OutboundSpool(config.spool_dir), SystemClock())
        for subject in SUBJECTS:
            data = f"From: alice@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
            await queue.enqueue("alice@example.test", ["bob@crash.example"], data, origin_account=None)
    finally:
        await store.close()


async def _queue_state(config: Config) -> tuple[list[str], list[str]]:
    store = await open_store(config.database_url)
    try:
        rows = [e.queue_id for e in await store.queue.list_queued()]
    finally:
        await store.close()
    return rows, [e.queue_id for e in OutboundSpool(config.spool_dir).list()]


def _serve(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "hardmail", "serve", "--config", str(config_path)],
                                stdout=out, stderr=out, env=env)


class HoldThird:
    """Accepts two messages, then holds the third until released and refuses it (the sender is dead)."""

    def __init__(self) -> None:
        self.holding = True
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.accepted = 0

    async def __call__(self, message: Received) -> str | None:
        if self.holding and self.accepted == 2:
            self.arrived.set()
            await asyncio.to_thread(self.release.wait, 120)
            return "451 4.3.0 receiver lost the sender"
        self.accepted += 1
        return None


@pytest.fixture
def dns() -> Iterator[LoopbackDnsServer]:
    zone = {("crash.example", "MX"): ["10 mx.crash.example."], ("mx.crash.example", "A"): [MX]}
    with LoopbackDnsServer(zone) as server:
        yield server


def _wait_for_all(sink: Sink) -> None:
    while True:
        sink.got_mail.clear()
        if set(sink.subjects()) >= set(SUBJECTS):
            return
        assert sink.got_mail.wait(120), f"only {sink.subjects()} arrived"


def test_sigkill_mid_queue_loses_nothing_and_duplicates_nothing(tmp_path: Path, dns: LoopbackDnsServer) -> None:
    port = free_port_on(MX)
    config_path = _config(tmp_path, dns.port, port)
    config = Config.model_validate(__import__("tomllib").loads(config_path.read_text()))
    asyncio.run(_fill_queue(config))
    hold = HoldThird()
    log = tmp_path / "server.log"
    with Sink(MX, port, on_data=hold) as sink:
        first = _serve(config_path, log)
        try:
            assert hold.arrived.wait(120), log.read_text()
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(60)
        hold.holding = False
        hold.release.set()
        assert len(sink.received) == 2
        second = _serve(config_path, log)
        try:
            _wait_for_all(sink)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0, log.read_text()
    counts = collections.Counter(sink.subjects())
    assert counts == {subject: 1 for subject in SUBJECTS}
    assert asyncio.run(_queue_state(config)) == ([], [])
