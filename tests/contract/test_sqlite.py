"""SQLite specifics of ``open_store``: directory creation, WAL, pragmas, file permissions."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from hardmail.store import open_store


async def _pragma(store: object, name: str) -> object:
    async with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()


async def test_sqlite_database_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    try:
        await store.migrate()
        assert await _pragma(store, "journal_mode") == "wal"
        assert await _pragma(store, "foreign_keys") == 1
        assert await _pragma(store, "synchronous") == 1  # NORMAL
        assert await _pragma(store, "busy_timeout") == 5000
    finally:
        await store.close()


async def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "hardmail.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()
    assert path.is_file()


async def test_new_database_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "hardmail.db"
    store = await open_store(f"sqlite+aiosqlite:///{path}")
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_aliases_targeting_uses_the_target_index(tmp_path: Path) -> None:
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    try:
        await store.migrate()
        async with store.engine.connect() as conn:  # type: ignore[attr-defined]
            plan = (
                await conn.execute(
                    text("EXPLAIN QUERY PLAN SELECT source FROM alias_targets WHERE target = 'x'")
                )
            ).all()
    finally:
        await store.close()
    assert any("ix_alias_targets_target" in str(row) for row in plan)
