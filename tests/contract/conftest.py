"""The ``store`` fixture: every contract test runs once per storage backend.

sqlite: a fresh database file per test; sqlite-cached: the same behind the server's look-up cache
(``hardmail.store.cache``); sqlite-upgraded: a copy of a database made as the first release left
it (revision 0001, with rows), upgraded to the newest schema and emptied again, so that the suite
checks what an upgrade produces. postgres: one uniquely named database per test session on
the server at 127.0.0.1:5432 (user postgres), dropped at the end, with the tables emptied between
tests. ``empty_database_url``: a database without any schema (SQLite, PostgreSQL), for the
migration tests. When that server cannot be reached the postgres tests are skipped, unless the environment
variable CI is set or HARDMAIL_REQUIRE_POSTGRES=1, in which case they fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from hardmail.core.clock import SystemClock
from hardmail.ops.backup.upgrade import copy_sqlite
from hardmail.store import open_store
from hardmail.store.cache import cached_store
from hardmail.store.ports import Store
from hardmail.store.sql.engine import create_engine_for, for_writing
from hardmail.store.sql.migrate import upgrade_to_head
from support.schema_history import CHAIN, build_database_at, remove_rows

# HARDMAIL_TEST_POSTGRES_SERVER overrides the server (without database name) for local runs.
POSTGRES_SERVER = os.environ.get(
    "HARDMAIL_TEST_POSTGRES_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432"
)
_TABLES = "alias_targets, aliases, accounts, addresses, domains, settings"


@dataclass
class PostgresDatabase:
    url: str | None
    problem: str = ""


def _server_place() -> str:
    url = make_url(POSTGRES_SERVER)
    return f"{url.host}:{url.port}"


def _postgres_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("HARDMAIL_REQUIRE_POSTGRES") == "1"


async def _run_admin_sql(statement: str) -> None:
    engine = create_async_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str) -> None:
    store = await open_store(url)
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    """A migrated, uniquely named PostgreSQL database for this test session."""
    name = f"hardmail_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_run_admin_sql(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is absent or refuses us
        yield PostgresDatabase(None, f"{type(exc).__name__}: {exc}")
        return
    try:
        url = f"{POSTGRES_SERVER}/{name}"
        asyncio.run(_migrate(url))
        yield PostgresDatabase(url)
    finally:
        asyncio.run(_run_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _postgres_url(database: PostgresDatabase) -> str:
    if database.url is not None:
        return database.url
    message = (
        f"PostgreSQL was expected at {_server_place()} (user postgres, trust authentication) "
        f"but could not be used: {database.problem}"
    )
    if _postgres_required():
        pytest.fail(message)
    pytest.skip(message + " (set CI or HARDMAIL_REQUIRE_POSTGRES=1 to make this a failure)")


async def _build_upgraded(url: str) -> None:
    await build_database_at(url, CHAIN[0])
    engine = create_engine_for(url)
    try:
        await upgrade_to_head(for_writing(engine))
        await remove_rows(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def upgraded_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database of the first release (with rows), upgraded to the newest schema, emptied."""
    path = tmp_path_factory.mktemp("upgraded") / "hardmail.db"
    asyncio.run(_build_upgraded(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "sqlite-cached", "sqlite-upgraded",
                        pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of the backend under test (resolved outside the event loop)."""
    path = tmp_path / "db" / "hardmail.db"
    if request.param == "sqlite-upgraded":
        path.parent.mkdir(mode=0o700)
        copy_sqlite(request.getfixturevalue("upgraded_sqlite_template"), path)
    if request.param.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{path}"
    return _postgres_url(request.getfixturevalue("postgres_database"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database without any schema: an SQLite file path, or a PostgreSQL database made for this
    test (on the server of ``postgres_database``) and dropped after it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hardmail.db'}"
        return
    _postgres_url(request.getfixturevalue("postgres_database"))  # skips (or fails) without a server
    name = f"hardmail_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_run_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        asyncio.run(_run_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _is_cached_variant(request: pytest.FixtureRequest) -> bool:
    callspec = getattr(request.node, "callspec", None)
    return callspec is not None and callspec.params.get("store_url") == "sqlite-cached"


@pytest.fixture
async def store(store_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A migrated, empty store; "sqlite-cached" is SQLite behind the server's look-up cache."""
    opened = await open_store(store_url)
    if _is_cached_variant(request):
        opened = cached_store(opened, SystemClock(), ttl=5.0)
    await opened.migrate()
    if store_url.startswith("postgresql"):
        async with opened.engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(text(f"TRUNCATE {_TABLES} CASCADE"))
    try:
        yield opened
    finally:
        await opened.close()
