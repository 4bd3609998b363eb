"""Archives of a server on PostgreSQL (the logical export and ``pg_dump``): verified line by
line and with ``pg_restore --list``; restored into a new SQLite database, into an empty
PostgreSQL database with pg_restore, and with the logical import when there is no dump; the
restored rows equal the original ones and new rows get new ids. Needs the PostgreSQL server at
127.0.0.1:5432 (user postgres, trust), as the contract tests do."""

from __future__ import annotations

import asyncio
import hashlib
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from hardmail.ops.backup.manifest import MANIFEST_MEMBER, DatabaseInfo, Manifest
from hardmail.ops.backup.restore import RestoreError, restore_full
from hardmail.ops.backup.verify import verify_archive
from hardmail.store import open_store
from hardmail.store.sql.migrate import head_revision
from support.backup_archives import BuiltArchive, build_archive, make_data_dir, rewrite_archive
from support.postgres import create_database, drop_database

pytestmark = pytest.mark.postgres


@pytest.fixture
def new_database() -> Iterator[Any]:
    """Makes empty, uniquely named databases; drops them at the end."""
    made: list[str] = []

    def make() -> str:
        made.append(asyncio.run(create_database("hardmail_restore")))
        return made[-1]

    yield make
    for url in made:
        asyncio.run(drop_database(url))


@pytest.fixture
def source(tmp_path: Path, new_database: Any) -> tuple[str, BuiltArchive]:
    url = new_database()
    sample = asyncio.run(make_data_dir(tmp_path / "data", database_url=url))
    config = tmp_path / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{sample.data_dir}"\n\n[storage]\nurl = "{url}"\n')
    return url, build_archive(sample.data_dir, tmp_path / "backups", database_url=url, config_file=config)


async def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "folders": "SELECT account, name, uidvalidity, uidnext, highestmodseq, messages FROM mailbox_folders",
        "messages": "SELECT f.account, f.name, m.uid, m.name, m.flags, m.modseq, m.internaldate, m.in_new "
                    "FROM mailbox_messages m JOIN mailbox_folders f ON f.id = m.folder_id",
        "accounts": "SELECT address, password_hash, enabled FROM accounts",
        "queue": "SELECT queue_id, sender, created_at FROM queue_messages",
        "domains": "SELECT name, created_at FROM domains",
    }
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            found = {key: sorted(tuple(row) for row in await connection.execute(text(query)))
                     for key, query in queries.items()}
    finally:
        await engine.dispose()
    for key in ("queue", "domains"):  # SQLite gives naive UTC timestamps back as text
        found[key] = [(*row[:-1], str(row[-1])[:19].replace("T", " ")) for row in found[key]]
    return found


def test_a_postgresql_archive_verifies(source: tuple[str, BuiltArchive]) -> None:
    _url, built = source
    assert built.manifest.database == DatabaseInfo("postgresql", "database/tables", "database/postgres.dump")
    report = verify_archive(built.path)
    assert report.failures == ()
    assert report.messages_checked == 17


def test_a_damaged_export_line_is_found(source: tuple[str, BuiltArchive]) -> None:
    _url, built = source
    member = "database/tables/mailbox_messages.jsonl"
    broken: dict[str, bytes] = {}

    def damage(name: str, data: bytes) -> bytes:
        if name == member:
            broken["data"] = data.replace(b"}\n", b"\n", 1)
            return broken["data"]
        if name == "database/postgres.dump":
            return data[: len(data) // 3]  # a dump pg_restore cannot read
        if name != MANIFEST_MEMBER:
            return data
        manifest = Manifest.from_json(data)
        files = []
        for entry in manifest.files:
            if entry.path == member:
                entry = replace(entry, size=len(broken["data"]), sha256=hashlib.sha256(broken["data"]).hexdigest())
            files.append(entry)
        return replace(manifest, files=tuple(files)).to_json()

    rewrite_archive(built.path, damage)
    report = verify_archive(built.path)
    assert f"{member} line 1: is not a JSON object" in report.failures
    assert any(line.startswith("database/postgres.dump: pg_restore cannot read it") for line in report.failures)


async def test_restored_into_sqlite_without_a_database_url(source: tuple[str, BuiltArchive], tmp_path: Path) -> None:
    url, built = source
    into = tmp_path / "restored"
    report = await restore_full(built.path, into)
    assert report.database == f"SQLite {into}/hardmail.db"
    assert report.schema_to == head_revision()
    assert await _rows(f"sqlite+aiosqlite:///{into}/hardmail.db") == await _rows(url)
    config = tomllib.loads((into / "hardmail.toml").read_text())
    assert config["storage"]["url"] == "" and config["server"]["data_dir"] == str(into)
    assert any("new SQLite database" in note for note in report.notes)


async def test_restored_into_postgresql_with_pg_restore(source: tuple[str, BuiltArchive], tmp_path: Path,
                                                        new_database: Any) -> None:
    url, built = source
    target = await asyncio.to_thread(new_database)
    report = await restore_full(built.path, tmp_path / "restored", database_url=target)
    assert any("pg_restore" in note for note in report.notes)
    assert await _rows(target) == await _rows(url)
    assert tomllib.loads((tmp_path / "restored" / "hardmail.toml").read_text())["storage"]["url"] == target


async def test_restored_into_postgresql_from_the_logical_export(source: tuple[str, BuiltArchive], tmp_path: Path,
                                                                new_database: Any) -> None:
    url, built = source

    def without_dump(name: str, data: bytes) -> bytes | None:
        if name == "database/postgres.dump":
            return None
        if name != MANIFEST_MEMBER:
            return data
        manifest = Manifest.from_json(data)
        return replace(manifest, database=replace(manifest.database, dump_member=None),
                       files=tuple(e for e in manifest.files if e.path != "database/postgres.dump")).to_json()

    rewrite_archive(built.path, without_dump)
    target = await asyncio.to_thread(new_database)
    report = await restore_full(built.path, tmp_path / "restored", database_url=target)
    assert any("logical export" in note for note in report.notes)
    assert await _rows(target) == await _rows(url)
    store = await open_store(target)  # the id sequences continue after the restored ids
    try:
        await store.mailbox.create_folder("alice@example.org", "After", None, 0, _stamp())
    finally:
        await store.close()


def _stamp() -> Any:
    from hardmail.store.ports_mailbox import DirStamp

    return DirStamp(0, 0)


async def test_a_database_that_is_not_empty_is_refused(source: tuple[str, BuiltArchive], tmp_path: Path) -> None:
    url, built = source
    into = tmp_path / "restored"
    with pytest.raises(RestoreError, match="is not empty"):
        await restore_full(built.path, into, database_url=url)
    assert [child.name for child in into.iterdir()] == ["hardmail.lock"]  # released, empty
