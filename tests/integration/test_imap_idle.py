"""IDLE and the untagged updates of the selected state: a change made by another client, in this
process or in another worker process, reaches a client in IDLE (and one that sends NOOP)."""

from __future__ import annotations

import contextlib
import os
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from support.cli_process import LoggedServe, seed_account
from support.imap import RawImap, imaps, message, raw
from support.live import (
    ALICE,
    BOB,
    BOB_PASSWORD,
    EPHEMERAL_LISTEN,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

WAIT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("imap-idle") / "data")) as live:
        yield live


def _idle(client: RawImap, folder: str = "INBOX") -> int:
    """Select ``folder`` and start IDLE; the number of messages it has."""
    untagged, done = client.command(f"SELECT {folder}")
    assert done.startswith(b"t") and b" OK " in done, done
    exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS\r\n"))
    client.send(b"idle1 IDLE\r\n")
    assert client.line().startswith(b"+ ")
    return exists


def _wait_for(client: RawImap, suffix: bytes) -> bytes:
    while True:
        line = client.line()
        if line.endswith(suffix):
            return line


def test_idle_sees_an_append_by_another_client(server: ServerThread) -> None:
    with raw(server) as watcher:
        assert watcher.login().startswith(b"t1 OK")
        exists = _idle(watcher)
        with imaps(server) as other:
            assert other.append("INBOX", None, None, message("while idle"))[0] == "OK"
        assert _wait_for(watcher, b" EXISTS\r\n") == b"* %d EXISTS\r\n" % (exists + 1)
        watcher.send(b"DONE\r\n")
        assert watcher.until("idle1")[1].startswith(b"idle1 OK")


def test_idle_sees_flags_and_expunges_of_another_client(server: ServerThread) -> None:
    with imaps(server) as other:
        other.append("INBOX", None, None, message("to be flagged"))
    with raw(server) as watcher:
        watcher.login()
        exists = _idle(watcher)
        with imaps(server) as other:
            other.select("INBOX")
            other.store(str(exists), "+FLAGS", "(\\Flagged)")
            line = _wait_for(watcher, b")\r\n")
            assert line.startswith(b"* %d FETCH (" % exists) and b"\\Flagged" in line
            other.store(str(exists), "+FLAGS", "(\\Deleted)")
            other.expunge()
        assert _wait_for(watcher, b" EXPUNGE\r\n") == b"* %d EXPUNGE\r\n" % exists
        watcher.send(b"DONE\r\n")
        assert watcher.until("idle1")[1].startswith(b"idle1 OK")


def test_idle_sees_a_delivery_through_submission(server: ServerThread) -> None:
    with raw(server) as watcher:
        watcher.login()
        exists = _idle(watcher)
        _submit(server.address("submission"), "delivered while idle")
        assert _wait_for(watcher, b" EXISTS\r\n") == b"* %d EXISTS\r\n" % (exists + 1)
        watcher.send(b"DONE\r\n")
        assert watcher.until("idle1")[1].startswith(b"idle1 OK")
        untagged, _ = watcher.command(f"FETCH {exists + 1} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: delivered while idle" in untagged[0]


def _submit(address: tuple[str, int], subject: str, client: smtplib.SMTP | None = None) -> None:
    smtp = client or smtplib.SMTP(*address, timeout=WAIT)
    try:
        if client is None:
            smtp.starttls(context=client_tls_context())
            smtp.login(BOB, BOB_PASSWORD)
        smtp.sendmail(BOB, [ALICE], message(subject))
    finally:
        smtp.close()


def test_noop_reports_what_changed(server: ServerThread) -> None:
    with raw(server) as watcher:
        watcher.login()
        untagged, _ = watcher.command("SELECT INBOX")
        exists = next(int(line.split()[1]) for line in untagged if line.endswith(b" EXISTS\r\n"))
        with imaps(server) as other:
            other.append("INBOX", None, None, message("noop"))
        seen: list[bytes] = []
        while b"* %d EXISTS\r\n" % (exists + 1) not in seen:  # the notifier may need its moment
            seen, done = watcher.command("NOOP")
            assert b" OK " in done


def test_idle_ends_at_server_stop_with_bye(tmp_path: Path) -> None:
    live = ServerThread(server_config(tmp_path / "data"))
    live.start()
    live.seed()
    client = RawImap(live.address("imaps"), tls=True)
    try:
        client.line()
        client.login()
        _idle(client)
        live.stop()
        assert _wait_for(client, b"\r\n").startswith(b"* BYE")
    finally:
        client.close()


# ----- two worker processes -----------------------------------------------------------------------


def _worker_of(sock: Any, server_port: int, pids: list[int]) -> int | None:
    """The pid of the worker holding the server end of the connection of ``sock``."""
    client_port = sock.getsockname()[1]
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


def seed_more(config: Config) -> None:
    """Bob, the sender of the submitted messages."""
    import asyncio

    from hardmail.admin.service import AdminService
    from hardmail.store import open_store

    async def seed() -> None:
        store = await open_store(config.database_url)
        try:
            await AdminService(store, config.auth.argon2).add_account(BOB, BOB_PASSWORD)
        finally:
            await store.close()

    asyncio.run(seed())


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_idle_sees_an_append_made_in_another_worker(tmp_path: Path) -> None:
    from support.cli_process import free_loopback_port

    port, submission = free_loopback_port(), free_loopback_port()
    settings: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {**EPHEMERAL_LISTEN, "imaps": [f"127.0.0.1:{port}"], "submission": [f"127.0.0.1:{submission}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
    }
    config_path = tmp_path / "hardmail.toml"
    config_path.write_text(tomli_w.dumps(settings))
    password = "correct horse battery staple"
    seed_account(Config.model_validate(settings), "alice@example.test", password)
    seed_more(Config.model_validate(settings))
    running = LoggedServe(config_path, WAIT)
    clients: list[RawImap] = []
    try:
        pids = running.wait_for("server.workers")["pids"]
        for _ in range(2):
            running.wait_for("server.worker_ready")
        by_worker: dict[int | None, RawImap] = {}
        while len([p for p in by_worker if p is not None]) < 2:
            assert len(clients) < 40, "every connection went to the same worker"
            client = RawImap(("127.0.0.1", port), tls=True)
            clients.append(client)
            client.line()
            assert client.login("alice@example.test", password).startswith(b"t1 OK")
            assert isinstance(client.sock, ssl.SSLSocket)
            by_worker.setdefault(_worker_of(client.sock, port, pids), client)
        watcher, appender = (by_worker[pid] for pid in pids)
        exists = _idle(watcher)
        data = message("from the other worker")
        appender.send(b"a1 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
        assert b" OK [APPENDUID " in appender.until("a1")[1]
        assert _wait_for(watcher, b" EXISTS\r\n") == b"* %d EXISTS\r\n" % (exists + 1)
        other = next(pid for pid in pids if by_worker[pid] is appender)
        for _ in range(40):  # a submission session on the worker that is not the watcher's
            smtp = smtplib.SMTP("127.0.0.1", submission, timeout=WAIT)
            if _worker_of(smtp.sock, submission, pids) == other:
                break
            smtp.close()
        smtp.starttls(context=client_tls_context())
        smtp.login(BOB, BOB_PASSWORD)
        _submit(("127.0.0.1", submission), "delivered by the other worker", smtp)
        assert _wait_for(watcher, b" EXISTS\r\n") == b"* %d EXISTS\r\n" % (exists + 2)
    finally:
        for client in clients:
            client.close()
        running.stop()
