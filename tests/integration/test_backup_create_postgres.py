"""A backup of a server whose database is PostgreSQL (127.0.0.1:5432, user postgres): the logical
export of every table (one REPEATABLE READ transaction, corrected to agree with the files) and the
``pg_dump`` of the same snapshot. A database is made for the test and dropped after it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from hardmail.ops.backup.create import BackupRequest, create_backup
from hardmail.ops.backup.snapshot_pg import decode_row, dump_environment
from hardmail.ops.backup.sources import WalkResult, walk
from hardmail.store.sql.tables import metadata
from support.postgres import scratch_database
from unit.ops.backup.create_helpers import (
    ALICE,
    DataDir,
    archive_members,
    archived_messages,
    build_data_dir,
    json_lines,
    manifest_of,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url() -> Iterator[str]:
    with scratch_database("hardmail_backup") as url:
        yield url


@pytest.fixture
async def data(tmp_path: Path, database_url: str) -> AsyncIterator[DataDir]:
    made = await build_data_dir(tmp_path / "data", database_url)
    try:
        yield made
    finally:
        await made.close()


def _tables(members: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    prefix = "database/tables/"
    return {name[len(prefix):-len(".jsonl")]: json_lines(data) for name, data in members.items()
            if name.startswith(prefix)}


async def _count(url: str, table: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(f"SELECT COUNT(*) FROM {table}")))
    finally:
        await engine.dispose()


async def test_every_table_is_exported_and_pg_dump_made(data: DataDir, tmp_path: Path, database_url: str) -> None:
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False))
    members = archive_members(result.archive_path)
    manifest = manifest_of(members)
    assert manifest.database.kind == "postgresql" and manifest.database.member == "database/tables"
    tables = _tables(members)
    assert set(tables) == {table.name for table in metadata.sorted_tables}
    for name in ("accounts", "domains", "mailbox_folders", "mailbox_messages", "queue_messages"):
        assert len(tables[name]) == await _count(database_url, name), name
    names = list(members)
    assert names.index("database/tables/domains.jsonl") < names.index("database/tables/accounts.jsonl")
    accounts = [decode_row(metadata.tables["domains"], row) for row in tables["domains"]]
    assert all(row["created_at"].tzinfo is not None for row in accounts)
    folders = {row["id"]: row for row in tables["mailbox_folders"]}
    indexed = set()
    for row in tables["mailbox_messages"]:
        folder = folders[row["folder_id"]]
        local, _, domain = folder["account"].partition("@")
        directory = f"files/mail/{domain}/{local}" + ("" if folder["name"] == "INBOX" else
                                                       "/" + _dirname(folder["name"]))
        indexed.add((directory, row["name"]))
    assert indexed == archived_messages(manifest)
    if shutil.which("pg_dump"):
        assert manifest.database.dump_member == "database/postgres.dump"
        dump = tmp_path / "postgres.dump"
        dump.write_bytes(members["database/postgres.dump"])
        listed = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=False)
        assert listed.returncode == 0, listed.stderr
        assert "TABLE DATA public mailbox_messages" in listed.stdout


def _dirname(name: str) -> str:
    from hardmail.mailbox.names import dirname

    return dirname(name)


async def test_the_export_agrees_with_the_files_taken_after_the_snapshot(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await data.mailboxes.snapshot(ALICE, "Archive")
    victim = first.messages[0]
    await data.mailboxes.store_flags(ALICE, "Archive", [victim.uid], "add", ["\\Deleted"])
    before = await data.mailboxes.snapshot(ALICE, "Archive")
    loop = asyncio.get_running_loop()

    def expunge_then_walk(*args: Any, **kwargs: Any) -> WalkResult:
        asyncio.run_coroutine_threadsafe(data.mailboxes.expunge(ALICE, "Archive", [victim.uid]), loop).result(60)
        return walk(*args, **kwargs)

    monkeypatch.setattr("hardmail.ops.backup.file_phase.walk", expunge_then_walk)
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False))
    tables = _tables(archive_members(result.archive_path))
    [folder] = [f for f in tables["mailbox_folders"] if f["account"] == ALICE and f["name"] == "Archive"]
    assert folder["messages"] == before.info.messages - 1 and folder["highestmodseq"] == before.info.highestmodseq + 1
    assert not [m for m in tables["mailbox_messages"] if m["folder_id"] == folder["id"] and m["uid"] == victim.uid]
    assert {"folder_id": folder["id"], "uid": victim.uid, "modseq": folder["highestmodseq"]} in tables[
        "mailbox_vanished"]
    [usage] = [a for a in tables["mailbox_accounts"] if a["account"] == ALICE]
    sizes = {f["id"] for f in tables["mailbox_folders"] if f["account"] == ALICE}
    mine = [m for m in tables["mailbox_messages"] if m["folder_id"] in sizes]
    assert (usage["storage_used"], usage["messages_used"]) == (sum(m["size"] for m in mine), len(mine))
    assert result.manifest.notes["vanished_dropped"] == 1


def test_the_password_reaches_pg_dump_only_through_its_environment() -> None:
    env = dump_environment("postgresql+asyncpg://backup:s3cret%21@db.example:6543/mail?ssl=require")
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == ("db.example", "6543", "backup", "mail")
    assert env["PGPASSWORD"] == "s3cret!" and env["PGSSLMODE"] == "require"
    assert make_url("postgresql://x@h/d").password is None and "PGPASSWORD" not in dump_environment(
        "postgresql+asyncpg://x@h/d")


def test_json_lines_are_plain_json(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from hardmail.ops.backup.snapshot_pg import write_rows

    path = tmp_path / "t.jsonl"
    with open(path, "w") as handle:
        write_rows(handle, [{"name": "x", "created_at": datetime(2026, 12, 3, 3, 0, tzinfo=UTC), "blob": b"\x00\xff"}],
                   None)
    assert json.loads(path.read_text()) == {"name": "x", "created_at": "2026-12-03T03:00:00+00:00", "blob": "AP8="}
