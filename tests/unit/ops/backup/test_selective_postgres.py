"""Selective restore on PostgreSQL: an archive holding a logical export (``database/tables/*.jsonl``)
of a PostgreSQL store, restored into that live PostgreSQL store (the server at 127.0.0.1:5432, user
postgres; skipped when it cannot be reached, unless CI or HARDMAIL_REQUIRE_POSTGRES=1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardmail.ops.backup.selective import restore_selective
from support.postgres import async_scratch_database
from support.selective_archive import Server, config_for, export_tables, open_server, write_archive

ALICE = "alice@example.test"
WHEN = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
pytestmark = pytest.mark.postgres


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with async_scratch_database("hardmail_selective") as url:
        opened = await open_server(config_for(tmp_path / "data", storage={"url": url}))
        try:
            yield opened
        finally:
            await opened.store.close()


async def test_a_postgres_mailbox_comes_back_from_its_logical_export(server: Server, tmp_path: Path) -> None:
    await server.admin.add_domain("example.test")
    await server.admin.add_account(ALICE, "correct horse battery staple")
    await server.mailboxes.create_folder(ALICE, "Work")
    for n in range(4):
        await server.mailboxes.append(ALICE, "INBOX", f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), ["\\Seen"], WHEN)
    await server.mailboxes.append(ALICE, "Work", b"Subject: w\r\n\r\nwork\r\n", ["$Later"], WHEN)
    work = await server.mailboxes.folder(ALICE, "Work")
    tables = await export_tables(server.store)
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups", database="tables", tables=tables)
    await server.mailboxes.store_flags(ALICE, "INBOX", [1, 2], "add", ["\\Deleted"])
    await server.mailboxes.expunge(ALICE, "INBOX")
    await server.mailboxes.delete_folder(ALICE, "Work")

    report = await restore_selective(server.config, archive, "mailbox", ALICE)

    inbox = await server.mailboxes.sync(ALICE, "INBOX")
    assert len(inbox.messages) == 4 and all(m.flags == frozenset({"\\Seen"}) for m in inbox.messages)
    again = await server.mailboxes.folder(ALICE, "Work")
    assert work is not None and again is not None and again.uidvalidity == work.uidvalidity
    [later] = (await server.mailboxes.sync(ALICE, "Work")).messages
    assert (later.uid, later.flags) == (1, frozenset({"$Later"}))
    assert (report.messages_added, report.folders_created, report.messages_kept_uid) == (3, 1, 1)
