"""Worker processes of ``hardmail serve``: two workers share the listeners, a worker that dies is
started again, SIGTERM stops them all, and a killed supervisor takes its workers with it.

The server is a real subprocess; the test follows its JSON log lines (a pipe read by a thread) and
waits for the events it expects, and waits for processes to end through pidfds, never by sleeping.
"""

from __future__ import annotations

import os
import select
import signal
import smtplib
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from hardmail.server.prefork import MAX_AUTO_WORKERS, worker_count
from support.cli_process import LoggedServe, free_loopback_port, seed_account
from support.dns_server import LoopbackDnsServer
from support.live import EPHEMERAL_LISTEN
from support.smtp_sink import Sink, free_port_on

WAIT = 60.0


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` (not a child of ours) has ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], WAIT)
        assert ready, f"process {pid} still running after {WAIT} s"
    finally:
        os.close(fd)


@pytest.fixture
def workers_config(tmp_path: Path) -> Path:
    return _write_config(tmp_path, {})


MX = "127.0.0.2"


def _write_config(tmp_path: Path, more: dict[str, Any]) -> Path:
    port = free_loopback_port()
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {**EPHEMERAL_LISTEN, "smtp": [f"127.0.0.1:{port}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        **more,
    }
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    config = Config.model_validate(raw)
    seed_account(config, "bob@example.test", "correct horse battery staple 42")
    return path


@pytest.fixture
def server(workers_config: Path) -> Iterator[tuple[LoggedServe, int, list[int]]]:
    running = LoggedServe(workers_config, WAIT, kill=True)
    try:
        pids = running.wait_for("server.workers")["pids"]
        ready = {running.wait_for("server.worker_ready")["pid"] for _ in pids}
        assert ready == set(pids)  # a worker killed before it was ready would stop the server
        port = int(tomllib.loads(workers_config.read_text())["listen"]["smtp"][0].rsplit(":", 1)[1])
        yield running, port, pids
    finally:
        running.stop()


def _send(port: int, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
        client.sendmail("alice@example.net", ["bob@example.test"], f"Subject: {subject}\r\n\r\nhello\r\n")


def _delivered(workers_config: Path) -> int:
    new = workers_config.parent / "data" / "mail" / "example.test" / "bob" / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def test_two_workers_share_the_listener(server: tuple[LoggedServe, int, list[int]], workers_config: Path) -> None:
    running, port, pids = server
    assert len(pids) == 2 and running.proc.pid not in pids
    for n in range(10):
        _send(port, f"message {n}")
    assert _delivered(workers_config) == 10


def test_a_dead_worker_is_started_again(server: tuple[LoggedServe, int, list[int]], workers_config: Path) -> None:
    running, port, pids = server
    os.kill(pids[1], signal.SIGKILL)
    died = running.wait_for("server.worker_died", worker=1)
    assert died["status"] == "killed by SIGKILL" and "hint" in died
    running.wait_for("server.start", worker=1)
    _send(port, "after the restart")
    assert _delivered(workers_config) == 1


def test_sigterm_stops_every_worker(server: tuple[LoggedServe, int, list[int]]) -> None:
    running, _port_number, pids = server
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=WAIT) == 0
    for pid in pids:
        _wait_for_exit(pid)


def test_workers_die_with_a_killed_supervisor(server: tuple[LoggedServe, int, list[int]]) -> None:
    running, port, pids = server
    running.proc.kill()
    running.proc.wait(timeout=WAIT)
    for pid in pids:
        _wait_for_exit(pid)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()


def test_automatic_worker_count_follows_the_cores() -> None:
    automatic = worker_count(Config())
    assert 1 <= automatic <= MAX_AUTO_WORKERS
    assert automatic == min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0)))
    assert worker_count(Config.model_validate({"server": {"workers": 3}})) == 3


def test_mail_queued_by_any_worker_leaves_at_once(tmp_path: Path) -> None:
    """The queue runs in worker 0 and polls only every 600 s here: mail that worker 1 queued leaves
    at once only because worker 1 wakes it. Eight messages, each waited for before the next is
    sent: if that wake were missing, one of them landing on worker 1 (all eight on worker 0 has a
    chance of about 1 in 256) would not arrive within the test's wait."""
    sink_port = free_port_on(MX)
    zone = {("remote.example", "MX"): ["10 mx.remote.example."], ("mx.remote.example", "A"): [MX]}
    with LoopbackDnsServer(zone) as dns, Sink(MX, sink_port) as sink:
        config_path = _write_config(tmp_path, {
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 10},
            "outbound": {"port": sink_port, "refuse_non_public": False},
            "queue": {"poll_interval": 600.0},
        })
        running = LoggedServe(config_path, WAIT, kill=True)
        try:
            started = {running.wait_for("server.start")["worker"] for _ in range(2)}
            assert started == {0, 1}
            port = int(tomllib.loads(config_path.read_text())["listen"]["smtp"][0].rsplit(":", 1)[1])
            for n in range(8):
                sink.got_mail.clear()
                with smtplib.SMTP("127.0.0.1", port, timeout=WAIT) as client:
                    client.sendmail("alice@example.test", ["carol@remote.example"], f"Subject: out {n}\r\n\r\nhi\r\n")
                while f"out {n}" not in sink.subjects():
                    assert sink.got_mail.wait(WAIT), f"message {n} did not leave: {sink.subjects()}"
                    sink.got_mail.clear()
        finally:
            running.stop()


def test_a_restarted_worker_removes_the_incoming_files_of_the_dead_one_only(
    server: tuple[LoggedServe, int, list[int]], workers_config: Path
) -> None:
    """A worker killed mid-message leaves its files in incoming/: the worker started in its place
    removes them (they could be 50 MB each, and a worker may die many times before the next server
    start); the files of the live worker stay."""
    running, _port, pids = server
    incoming = workers_config.parent / "data" / "incoming"
    incoming.mkdir(exist_ok=True)
    (incoming / f"{pids[1]}-leftover").write_bytes(b"x" * 1000)
    (incoming / f"{pids[0]}-in-progress").write_bytes(b"x")
    os.kill(pids[1], signal.SIGKILL)
    running.wait_for("server.worker_died", worker=1)
    assert running.wait_for("incoming.recover")["file"] == f"{pids[1]}-leftover"
    running.wait_for("server.start", worker=1)
    assert sorted(p.name for p in incoming.iterdir()) == [f"{pids[0]}-in-progress"]
