"""The ``store`` fixture: every contract test runs once per storage backend.

sqlite: a fresh database file per test; sqlite-cached: the same behind the server's look-up cache
(``hardmail.store.cache``). postgres: one uniquely named database per test session on
the server at 127.0.0.1:5432 (user postgres), dropped at the end, with the tables emptied between
tests. When that server cannot be reached the postgres tests are skipped, unless the environment
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
from hardmail.store import open_store
from hardmail.store.cache import cached_store
from hardmail.store.ports import Store

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


@pytest.fixture(params=["sqlite", "sqlite-cached", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL of the backend under test (resolved outside the event loop)."""
    if request.param.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'hardmail.db'}"
    return _postgres_url(request.getfixturevalue("postgres_database"))


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
