"""Applying the Alembic migrations in ``migrations/`` programmatically (no alembic.ini at run time).

:func:`upgrade_to_head` is idempotent and runs in one transaction; on PostgreSQL a transaction-level
advisory lock makes servers that start together migrate one after the other.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK_KEY = 0x6861_7264_6D61_696C % (2**63)  # "hardmail", fits a PostgreSQL bigint


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revisions this version of hardmail knows, comma-separated.

    Independent features may add migration branches from the same parent; the server upgrades
    every branch to its head ("heads"), so the version can name several revisions.
    """
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads, "the migrations directory has no revision"
    return ",".join(sorted(heads))


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; does nothing when it is already there."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "heads")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None before the first migration."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) if heads else None
