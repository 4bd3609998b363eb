"""Scratch PostgreSQL databases for tests: made on the server at 127.0.0.1:5432 (user postgres;
``HARDMAIL_TEST_POSTGRES_SERVER`` overrides it), uniquely named, dropped after the test. When the
server cannot be used the test is skipped, or fails when ``CI`` or ``HARDMAIL_REQUIRE_POSTGRES=1``
is set (as in tests/contract/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_SERVER = os.environ.get("HARDMAIL_TEST_POSTGRES_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432")


async def admin_sql(statement: str) -> None:
    """Run one statement on the server's ``postgres`` database, outside a transaction."""
    engine = create_async_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def create_database(prefix: str) -> str:
    """A new empty database named ``<prefix>_<pid>_<random>``; its URL (skips or fails the test
    when the server cannot be used)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        await admin_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server here, or it refuses us
        if os.environ.get("CI") or os.environ.get("HARDMAIL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES_SERVER} cannot be used: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_SERVER} cannot be used: {exc}")
    return f"{POSTGRES_SERVER}/{name}"


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """For synchronous tests and fixtures: a database for the block, dropped after it."""
    url = asyncio.run(create_database(prefix))
    try:
        yield url
    finally:
        asyncio.run(drop_database(url))


@contextlib.asynccontextmanager
async def async_scratch_database(prefix: str) -> AsyncIterator[str]:
    """For async tests and fixtures: a database for the block, dropped after it."""
    url = await create_database(prefix)
    try:
        yield url
    finally:
        await drop_database(url)
