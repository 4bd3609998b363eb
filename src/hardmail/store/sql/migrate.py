"""Applying hardmail's Alembic migrations (``migrations/``) programmatically; no alembic.ini at run time.

One linear history (:func:`revision_chain`), always read before it is written:

- :func:`read_state` says where a database stands: the revision of the chain it is at, the
  revisions pending, and the hardmail version that last upgraded it (the setting
  :data:`WRITTEN_BY_KEY`, recorded by every upgrade).
- A database made before the history was made linear has one ``alembic_version`` row per head of
  the old branched history (:data:`BRANCHED_PARENTS`). Each release applied every revision that
  existed then, so what such a database applied is a prefix of the chain: it amounts to the last
  revision of that prefix, and :func:`apply_pending` rewrites the rows to that one before upgrading.
- A revision this build does not know was written by a newer hardmail: :class:`SchemaTooNew`, with
  both versions named; never a silent downgrade. Rows that make no prefix: :class:`SchemaUnrecognised`.
- Each upgrade is one transaction. PostgreSQL servers that start together take turns on an
  advisory lock. SQLite runs the migrations with foreign keys off: a batch ALTER copies a table and
  drops the old one, and with foreign keys on that DROP deletes, by ON DELETE CASCADE, every row
  that refers to the table (0007_account_freeze would drop the credentials of every account);
  ``PRAGMA foreign_key_check`` must find nothing before the commit.

Which callers may upgrade an existing database is decided above this module: the server start and
``hardmail upgrade`` do, after a backup (:mod:`hardmail.ops.backup.upgrade`); other commands only
create a new schema (``existing=False``: :class:`SchemaUpgradeNeeded`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import hardmail
from hardmail.store.ports import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
WRITTEN_BY_KEY = "schema.written_by_version"  # settings row: the hardmail that last upgraded the schema
_MIGRATION_LOCK_KEY = 0x6861_7264_6D61_696C % (2**63)  # "hardmail", fits a PostgreSQL bigint
_settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
_versions = sa.table("alembic_version", sa.column("version_num", sa.String))

# The history as it was before issue 13 made it linear: each revision and its parents. A database
# of that time has one alembic_version row per head of the part it applied. Never edit this: it
# describes databases that exist; new revisions go on the linear chain only.
BRANCHED_PARENTS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "0001": (),
    "0002_queue": ("0001",),
    "0003_credentials": ("0001",),
    "0004_access": ("0001",),
    "0005_msgauth": ("0001",),
    "0006_access_ban_expiry": ("0004_access",),
    "0007_account_freeze": ("0001",),
    "0007_login_guard": ("0006_access_ban_expiry",),
    "0008_mailbox_index": ("0007_account_freeze", "0007_login_guard"),
})


class SchemaError(StoreError):
    """The schema cannot be used or upgraded as found; ``hint`` says what the admin can do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class SchemaTooNew(SchemaError):
    """The database is at a revision this build does not know: a newer hardmail wrote it."""


class SchemaUnrecognised(SchemaError):
    """The alembic_version rows make no prefix of the history (edited by hand, an unreleased build)."""


class SchemaUpgradeNeeded(SchemaError):
    """The database has a revision and pending migrations, and the caller may not upgrade it."""


class SchemaIntegrityError(SchemaError):
    """The migrations would leave rows whose reference is gone; nothing was changed."""


# --- the history --------------------------------------------------------------------------


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@functools.cache
def revision_chain() -> tuple[str, ...]:
    """Every revision this build knows, oldest first; the migrations must form one line."""
    script = _script()
    heads = script.get_heads()
    newest_first = list(script.walk_revisions())
    if len(heads) != 1 or any(isinstance(s.down_revision, (tuple, list)) for s in newest_first):
        raise RuntimeError(f"the migrations must form one linear history; heads: {sorted(heads)}")
    return tuple(s.revision for s in reversed(newest_first))


def head_revision() -> str:
    """The newest schema revision: the one this version of hardmail writes."""
    return revision_chain()[-1]


def describe_revision(revision: str) -> str:
    """The first paragraph of the revision's docstring, on one line."""
    found = _script().get_revision(revision)
    return " ".join((found.doc or "").split()) if found is not None else ""


def hardmail_version() -> str:
    """The version of this hardmail (the installed package's, else the source tree's)."""
    try:
        return version("hardmail")
    except PackageNotFoundError:
        return hardmail.__version__


def branched_prefix(stamped: Sequence[str]) -> str | None:
    """The revision of the chain that the rows of a branched-era database amount to: the last of
    the prefix it applied. None when a row is unknown there or the applied set is no prefix."""
    applied: set[str] = set()
    waiting = list(stamped)
    while waiting:
        revision = waiting.pop()
        if revision not in BRANCHED_PARENTS:
            return None
        if revision not in applied:
            applied.add(revision)
            waiting.extend(BRANCHED_PARENTS[revision])
    chain = revision_chain()
    if set(chain[:len(applied)]) != applied:
        return None
    return chain[len(applied) - 1]


def effective_revision(stamped: Sequence[str]) -> str | None:
    """The one revision the alembic_version rows amount to (a branched-era set collapsed as the
    next upgrade will), else the rows comma-joined as they are; None for no rows."""
    rows = sorted(stamped)
    if len(rows) > 1:
        collapsed = branched_prefix(rows)
        if collapsed is not None:
            return collapsed
    return ",".join(rows) or None


# --- where a database stands --------------------------------------------------------------


@dataclass(frozen=True)
class SchemaState:
    """What :func:`read_state` found; ``problem`` (raised by :meth:`check`) when it is unusable."""

    stamped: tuple[str, ...]  # the alembic_version rows, sorted
    current: str | None  # the revision of the chain they amount to; None: a new, empty database
    pending: tuple[str, ...]  # the revisions an upgrade applies, oldest first
    written_by: str | None = None  # the hardmail version that last upgraded it, when recorded
    problem: SchemaError | None = field(default=None, compare=False)

    @property
    def head(self) -> str:
        return head_revision()

    @property
    def is_new(self) -> bool:
        return not self.stamped

    @property
    def needs_collapse(self) -> bool:
        """Rows of the branched history, to be rewritten as the one revision they amount to."""
        return len(self.stamped) > 1

    @property
    def needs_upgrade(self) -> bool:
        """An existing database with migrations pending (what takes a backup first)."""
        return not self.is_new and bool(self.pending)

    def check(self) -> SchemaState:
        """This state, or raise its problem (SchemaTooNew, SchemaUnrecognised)."""
        if self.problem is not None:
            raise self.problem
        return self


def read_state_of(connection: Connection) -> SchemaState:
    """Where the database of ``connection`` stands; only reads."""
    stamped = tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    written_by = _written_by(connection) if stamped else None
    chain = revision_chain()
    current = stamped[0] if len(stamped) == 1 else branched_prefix(stamped) if stamped else None
    if current not in chain and stamped:
        return SchemaState(stamped, None, (), written_by, _problem_of(stamped, written_by))
    pending = chain[chain.index(current) + 1:] if current is not None else chain
    return SchemaState(stamped, current, pending, written_by)


async def read_state(engine: AsyncEngine) -> SchemaState:
    """:func:`read_state_of` on a connection of ``engine``."""
    async with engine.connect() as connection:
        return await connection.run_sync(read_state_of)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (of the chain; the rows as found when unusable), or None
    before the first migration."""
    state = await read_state(engine)
    return state.current if state.problem is None else ",".join(state.stamped)


def _written_by(connection: Connection) -> str | None:
    if not sa.inspect(connection).has_table("settings"):
        return None
    found = connection.scalar(sa.select(_settings.c.value).where(_settings.c.key == WRITTEN_BY_KEY))
    return None if found is None else str(found)


def _problem_of(stamped: tuple[str, ...], written_by: str | None) -> SchemaError:
    ours, head = hardmail_version(), head_revision()
    rollback = "see \"Rolling back\" in docs/upgrade.md"
    if len(stamped) == 1 and written_by and written_by != ours:
        return SchemaTooNew(
            f"the database was last upgraded by hardmail {written_by} (schema revision {stamped[0]}), newer than "
            f"this hardmail {ours} (schema revision {head}); install hardmail {written_by} or newer, or restore "
            "a backup made with this version", rollback)
    if len(stamped) == 1:
        return SchemaTooNew(
            f"the database has schema revision {stamped[0]}, written by a hardmail newer than this hardmail {ours} "
            f"(schema revision {head}); install that newer hardmail, or restore a backup made with this version",
            rollback)
    return SchemaUnrecognised(
        f"the database's schema revisions ({', '.join(stamped)}) are not a state that any hardmail release "
        f"leaves (this hardmail {ours} knows {' → '.join(revision_chain())})",
        "the alembic_version table was changed by hand or by an unreleased build; restore a backup")


def upgrade_needed(state: SchemaState) -> SchemaUpgradeNeeded:
    return SchemaUpgradeNeeded(
        "the database needs an upgrade: run `hardmail upgrade` (takes a backup first)",
        f"its schema revision is {state.current}, this hardmail writes {state.head}; "
        "`hardmail upgrade --dry-run` shows what would change")


# --- upgrading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedStep:
    revision: str
    description: str
    seconds: float


@dataclass(frozen=True)
class UpgradeResult:
    before: str | None  # the revision before (None: the schema was created)
    after: str
    steps: tuple[AppliedStep, ...] = ()
    collapsed: tuple[str, ...] = ()  # the branched-history rows rewritten as ``before``

    @property
    def seconds(self) -> float:
        return sum(step.seconds for step in self.steps)


def apply_pending(connection: Connection, *, existing: bool = True, writer: str | None = None) -> UpgradeResult:
    """Inside the caller's transaction: refuse an unusable schema, rewrite branched-history rows,
    apply the pending migrations one by one and record ``writer`` (default: this hardmail's
    version) as the one that upgraded. ``existing`` False: only a new schema may be created."""
    state = read_state_of(connection).check()
    if state.needs_upgrade and not existing:
        raise upgrade_needed(state)
    if state.needs_collapse and state.current is not None:
        connection.execute(sa.delete(_versions))
        connection.execute(sa.insert(_versions).values(version_num=state.current))
    config = alembic_config(connection)
    steps = []
    for revision in state.pending:
        started = time.monotonic()
        command.upgrade(config, revision)
        steps.append(AppliedStep(revision, describe_revision(revision), time.monotonic() - started))
    if steps:
        _check_references(connection)
        connection.execute(sa.delete(_settings).where(_settings.c.key == WRITTEN_BY_KEY))
        connection.execute(sa.insert(_settings).values(key=WRITTEN_BY_KEY, value=writer or hardmail_version()))
    collapsed = state.stamped if state.needs_collapse else ()
    return UpgradeResult(state.current, head_revision(), tuple(steps), collapsed)


def _check_references(connection: Connection) -> None:
    """SQLite (foreign keys were off): every reference must still resolve."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise SchemaIntegrityError(
            f"the schema upgrade would leave {len(broken)} rows whose reference is gone (in {', '.join(tables)}); "
            "nothing was changed", "report this as a hardmail bug, with `hardmail --version`")


async def upgrade_to_head(engine: AsyncEngine, *, existing: bool = True, writer: str | None = None) -> UpgradeResult:
    """Bring the schema to the newest revision in one transaction (see :func:`apply_pending`);
    does nothing (and writes nothing) when it is already there."""
    async with migration_connection(engine) as connection, connection.begin():
        await take_migration_lock(connection)
        return await connection.run_sync(lambda sync: apply_pending(sync, existing=existing, writer=writer))


async def upgrade_database(url: str) -> UpgradeResult:
    """Apply every pending migration to the database at ``url`` without a backup: only for a
    database that is itself a copy out of a backup (a restored archive, a scratch copy of one).
    Live data is upgraded by :func:`hardmail.ops.backup.upgrade.upgrade_with_backup`."""
    from hardmail.store.sql.engine import create_engine_for, for_writing

    engine = create_engine_for(url)
    try:
        return await upgrade_to_head(for_writing(engine))
    finally:
        await engine.dispose()


async def take_migration_lock(connection: AsyncConnection) -> None:
    """PostgreSQL: wait for the migration turn (a transaction-level advisory lock)."""
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


@contextlib.asynccontextmanager
async def migration_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for migrations; on SQLite with foreign keys off (see the module text) until
    it goes back to the pool, or it is dropped rather than go back with them off."""
    async with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            yield connection
            return
        driver = (await connection.get_raw_connection()).driver_connection
        await _sqlite_pragma(driver, "PRAGMA foreign_keys=OFF")
        try:
            yield connection
        finally:
            try:
                await _sqlite_pragma(driver, "PRAGMA foreign_keys=ON")
            except Exception:
                await connection.invalidate()


async def _sqlite_pragma(driver: Any, pragma: str) -> None:
    """Run ``pragma`` on the aiosqlite connection outside any transaction (where it takes effect)."""
    cursor = await driver.execute(pragma)
    await cursor.close()
