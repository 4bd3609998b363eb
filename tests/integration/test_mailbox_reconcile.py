"""The start-up reconcile (issue 12, point 6): a file put into a Maildir while the server was stopped
has an index entry once it has started again, and an entry whose file vanished is dropped; the
messages that stayed keep their UIDs."""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.delivery.maildir import MaildirStore
from hardmail.mailbox import MailboxStore
from hardmail.store import open_store
from support.cli_process import LoggedServe, seed_account
from support.live import ALICE, ServerThread, running_server, server_config

SENDER = "someone@elsewhere.example"


def _mailboxes(server: ServerThread) -> MailboxStore:
    assert server.server is not None and server.server.context.mailboxes is not None
    return server.server.context.mailboxes


def _send(server: ServerThread, subject: str) -> None:
    with smtplib.SMTP(*server.address("smtp"), timeout=30) as client:
        client.sendmail(SENDER, [ALICE], f"Subject: {subject}\r\n\r\nbody\r\n".encode())


def _uids_by_subject(server: ServerThread) -> dict[str, int]:
    mailboxes = _mailboxes(server)
    found = {}
    for record in server.run(mailboxes.snapshot(ALICE, "INBOX")).messages:
        data = server.run(mailboxes.read_message(ALICE, "INBOX", record.uid))
        assert data is not None
        subject = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject: "))
        found[subject[9:].decode()] = record.uid
    return found


def _file_of(maildir: Path, subject: str) -> Path:
    for path in [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]:
        if f"Subject: {subject}\r\n".encode() in path.read_bytes():
            return path
    raise AssertionError(f"no file with subject {subject}")


def test_start_indexes_files_added_and_drops_entries_of_files_removed_while_stopped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = server_config(tmp_path / "data")
    with running_server(config) as server:
        for subject in ("one", "two", "three"):
            _send(server, subject)
        assert _uids_by_subject(server) == {"one": 1, "two": 2, "three": 3}
        maildir = server.server.context.acceptor.maildir.mailbox_path(ALICE)  # type: ignore[union-attr]
    # stopped: another program delivers one message and deletes another
    (maildir / "new" / "1700000000.M1P1Q1.other.host,S=30").write_bytes(b"Subject: by hand\r\n\r\nbody\r\n")
    _file_of(maildir, "two").unlink()
    caplog.set_level(logging.INFO)
    again = ServerThread(config)
    again.start()
    try:
        assert _uids_by_subject(again) == {"one": 1, "three": 3, "by hand": 4}
        info = again.run(_mailboxes(again).folder(ALICE, "INBOX"))
        assert info is not None and info.messages == 3
    finally:
        again.stop()
    events = [json.loads(line[line.index("{"):]) for line in caplog.text.splitlines() if '"mailbox.' in line]
    assert any(event["event"] == "mailbox.reconcile" and event.get("result") == "success"
               and event.get("folders", 0) >= 1 for event in events)
    repaired = [event for event in events if event["event"] == "mailbox.repaired"]
    assert [(e["account"], e["folder"], e["messages_before"], e["messages"], e["new_uids"]) for e in repaired] == [
        (ALICE, "INBOX", 3, 3, 1)]


def test_with_workers_the_reconcile_runs_once_before_they_start(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {"smtp": ["127.0.0.1:0"], "submission": ["127.0.0.1:0"], "submissions": ["127.0.0.1:0"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
    }
    config_path = tmp_path / "hardmail.toml"
    config_path.write_text(tomli_w.dumps(raw))
    config = Config.model_validate(raw)
    seed_account(config, ALICE, "a long enough passphrase 9")

    async def set_up_then_snapshot(work: str) -> list[int]:
        store = await open_store(config.database_url)
        try:
            mailboxes = build_mailbox_store(config, store, SystemClock())
            if work == "set up":
                await mailboxes.ensure_account(ALICE)
            return [record.uid for record in (await mailboxes.snapshot(ALICE, "INBOX")).messages]
        finally:
            await store.close()

    assert asyncio.run(set_up_then_snapshot("set up")) == []
    inbox = MaildirStore(config.maildir_root, "x").mailbox_path(ALICE)
    (inbox / "new" / "1700000000.M1P1Q1.other.host,S=30").write_bytes(b"Subject: by hand\r\n\r\nbody\r\n")
    running = LoggedServe(config_path, 60)
    try:
        seen: list[dict[str, Any]] = []
        while sum(event["event"] == "server.start" for event in seen) < 2:  # both workers are up
            seen.append(running.events.get(timeout=60))
    finally:
        running.stop()
    names = [event["event"] for event in seen]
    assert names.count("mailbox.reconcile") == 1  # once, before the workers were forked: not in each
    assert names.index("mailbox.reconcile") < names.index("server.workers")
    repaired = [event for event in seen if event["event"] == "mailbox.repaired"]
    assert [(e["account"], e["folder"], e["new_uids"]) for e in repaired] == [(ALICE, "INBOX", 1)]
    assert asyncio.run(set_up_then_snapshot("read")) == [1]
