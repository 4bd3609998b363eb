"""Backups keep the security tables (audit_runs, sign_in_sources, notice_preferences) and the
notice feed's cursor: an archive of a server on SQLite (the database file) and on PostgreSQL (the
logical export, restored by the logical import into SQLite and into PostgreSQL, and by pg_restore)
restores them as they were; the schema the import creates first adds no row of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardmail.ops.backup.manifest import MANIFEST_MEMBER, Manifest
from hardmail.ops.backup.restore import restore_full
from hardmail.store import open_store
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.ports_security import AuditRun
from hardmail.store.sql.security_backend import FEED_CURSOR_KEY
from support.backup_archives import ALICE, BOB, BuiltArchive, build_archive, make_data_dir, rewrite_archive
from support.postgres import create_database, drop_database

WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


async def _add_security_rows(url: str) -> None:
    store = await open_store(url)
    try:
        security = store.security
        await store.credentials.append_login_event(LoginEvent(WHEN, ALICE, "login", "success", "imap", "PLAIN",
                                                              "192.0.2.7", "TLSv1.3", ""))
        assert await security.add_sign_in_source(ALICE, "192.0.2.7", WHEN)
        assert await security.add_sign_in_source(BOB, "2001:db8::1", WHEN + timedelta(hours=1))
        await security.set_weekly_digest(BOB, True)
        await security.save_audit_run(AuditRun(0, WHEN, WHEN + timedelta(seconds=9), "own", "scheduled", 77,
                                               "high", '[{"id": "tls.versions"}]'))
        await store.set_setting(FEED_CURSOR_KEY, str(await security.latest_login_event_id()))
    finally:
        await store.close()


async def _security_rows(url: str) -> dict[str, Any]:
    store = await open_store(url)
    try:
        security = store.security
        return {
            "sources": {a: await security.sign_in_sources(a) for a in (ALICE, BOB)},
            "digest": await security.weekly_digest_accounts(),
            "runs": await security.list_audit_runs(),
            "cursor": await store.get_setting(FEED_CURSOR_KEY),
            "feed": await security.login_events_after(0),
        }
    finally:
        await store.close()


@pytest.fixture
def new_database() -> Iterator[Any]:
    made: list[str] = []

    def make() -> str:
        made.append(asyncio.run(create_database("hardmail_restore")))
        return made[-1]

    yield make
    for url in made:
        asyncio.run(drop_database(url))


def _source(tmp_path: Path, database_url: str | None) -> tuple[str, BuiltArchive]:
    sample = asyncio.run(make_data_dir(tmp_path / "data", database_url=database_url, messages=2))
    asyncio.run(_add_security_rows(sample.database_url))
    return sample.database_url, build_archive(sample.data_dir, tmp_path / "backups", database_url=database_url)


def _without_dump(name: str, data: bytes) -> bytes | None:
    if name == "database/postgres.dump":
        return None
    if name != MANIFEST_MEMBER:
        return data
    manifest = Manifest.from_json(data)
    return replace(manifest, database=replace(manifest.database, dump_member=None),
                   files=tuple(e for e in manifest.files if e.path != "database/postgres.dump")).to_json()


async def test_an_sqlite_archive_keeps_the_security_tables(tmp_path: Path) -> None:
    url, built = await asyncio.to_thread(_source, tmp_path, None)
    expected = await _security_rows(url)
    assert expected["runs"] and expected["digest"] == [BOB] and expected["cursor"] == str(expected["feed"][-1].id)
    await restore_full(built.path, tmp_path / "restored")
    assert await _security_rows(f"sqlite+aiosqlite:///{tmp_path}/restored/hardmail.db") == expected


@pytest.mark.postgres
@pytest.mark.parametrize("into", ["sqlite", "postgresql-logical", "postgresql-pg_restore"])
async def test_a_postgresql_archive_keeps_the_security_tables(tmp_path: Path, new_database: Any, into: str) -> None:
    url, built = await asyncio.to_thread(_source, tmp_path, await asyncio.to_thread(new_database))
    expected = await _security_rows(url)
    assert expected["sources"] == {ALICE: ["192.0.2.7"], BOB: ["2001:db8::1"]}
    assert expected["cursor"] == str(expected["feed"][-1].id)
    if into == "postgresql-logical":
        rewrite_archive(built.path, _without_dump)
    target = None if into == "sqlite" else await asyncio.to_thread(new_database)
    await restore_full(built.path, tmp_path / "restored", database_url=target)
    restored = target or f"sqlite+aiosqlite:///{tmp_path}/restored/hardmail.db"
    assert await _security_rows(restored) == expected
