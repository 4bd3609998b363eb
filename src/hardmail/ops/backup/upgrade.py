"""Safe schema upgrades: the refusal of a newer schema, the backup before an upgrade, the upgrade.

:func:`upgrade_with_backup` is what the server start (its first process) and ``hardmail upgrade``
run. A database written by a newer hardmail is refused (``schema.refused``; never a downgrade).
When migrations are pending on a database that already has a revision, a full, verified backup is
taken first (:func:`backup_before_upgrade`, ``schema.upgrade_backup``) and a failed backup stops
the upgrade; ``--no-backup`` or ``[backup] before_upgrade = false`` skip it with a warning. Then
the migrations, in one transaction (``schema.upgraded``: from, to, seconds). A new, empty
database just gets its schema, without a backup.

:func:`rehearse_upgrade` (``hardmail upgrade --dry-run``) applies the pending migrations to a copy
of an SQLite database (the online backup API), or inside a PostgreSQL transaction that is rolled
back (PostgreSQL has transactional DDL), and reports each migration, the tables, columns and
indexes added, removed or changed, the row counts of changed tables and the time taken. The live
database is not changed.

The backup comes from :mod:`hardmail.ops.backup.create`, and its settings from the ``[backup]``
section when the configuration has one; both are looked up when needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.config.schema import Config
from hardmail.ops.log import log_event
from hardmail.store.ports import Unavailable
from hardmail.store.sql import migrate as migrations
from hardmail.store.sql.engine import create_engine_for, describe_url, for_writing, sqlite_database_file

NO_BACKUP_OPTION = "--no-backup"
NO_BACKUP_SETTING = "[backup] before_upgrade = false"
BACKUP_FAILED_HINT = ("fix the cause and try again; `--no-backup` (on `hardmail serve` or `hardmail upgrade`) "
                      "upgrades without a backup, at your own risk")


class UpgradeBackupFailed(migrations.SchemaError):
    """The backup before an upgrade failed: the schema was not changed."""


@dataclass(frozen=True)
class UpgradeOptions:
    """How an upgrade is made: ``backup`` False is ``--no-backup``; ``config_file`` goes into the
    backup; ``warn`` prints a warning for the admin (the CLI's standard error)."""

    backup: bool = True
    config_file: Path | None = None
    warn: Callable[[str], None] | None = None


@dataclass(frozen=True)
class UpgradeOutcome:
    result: migrations.UpgradeResult
    backup: Path | None = None  # the archive taken before the upgrade
    backup_skipped: str = ""  # why an upgrade went without a backup (NO_BACKUP_OPTION, NO_BACKUP_SETTING)

    @property
    def upgraded(self) -> bool:
        """An existing schema was upgraded (not created, not already current)."""
        return self.result.before is not None and bool(self.result.steps)


async def upgrade_with_backup(config: Config, options: UpgradeOptions | None = None) -> UpgradeOutcome:
    """Bring the database of ``config`` to this hardmail's schema, safely (see the module text).
    Raises SchemaTooNew/SchemaUnrecognised, UpgradeBackupFailed, Unavailable."""
    options = options or UpgradeOptions()
    engine = create_engine_for(config.database_url)
    try:
        state = await checked_state(engine)
        backup, skipped = None, ""
        if state.needs_upgrade:
            backup, skipped = await _backup_or_skip(config, state, options)
        result = await migrations.upgrade_to_head(for_writing(engine))
    except (DBAPIError, OSError) as exc:
        raise unavailable(config.database_url, exc) from exc
    finally:
        await engine.dispose()
    outcome = UpgradeOutcome(result, backup, skipped)
    if outcome.upgraded:
        revisions: dict[str, Any] = {"from": result.before, "to": result.after}
        log_event("schema.upgraded", **revisions,
                  seconds=round(result.seconds, 3), revisions=[step.revision for step in result.steps],
                  backup=str(backup) if backup else None)
    return outcome


async def checked_state(engine: AsyncEngine) -> migrations.SchemaState:
    """Where the schema stands; a database this hardmail cannot use is logged and raised."""
    state = await migrations.read_state(engine)
    if state.problem is not None:
        log_event("schema.refused", level="error", revisions=list(state.stamped), written_by=state.written_by,
                  version=migrations.hardmail_version(), head=migrations.head_revision(), detail=str(state.problem))
    return state.check()


def unavailable(url: str, exc: BaseException) -> Unavailable:
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return Unavailable(f"cannot use the database {describe_url(url)}: {first_line}")


async def _backup_or_skip(config: Config, state: migrations.SchemaState,
                          options: UpgradeOptions) -> tuple[Path | None, str]:
    skipped = NO_BACKUP_OPTION if not options.backup else "" if backup_enabled(config) else NO_BACKUP_SETTING
    if not skipped:
        return await backup_before_upgrade(config, state.current, state.head, options.config_file), ""
    text = (f"upgrading the database schema from {state.current} to {state.head} without a backup ({skipped}): "
            "if the upgrade goes wrong, only an older backup can bring the data back")
    revisions: dict[str, Any] = {"from": state.current, "to": state.head}
    log_event("schema.upgrade_backup", level="warning", result="skipped", reason=skipped, **revisions)
    if options.warn is not None:
        options.warn(text)
    return None, skipped


def backup_enabled(config: Config) -> bool:
    """``[backup] before_upgrade`` (true when the configuration has no such setting)."""
    return bool(_backup_setting(config, "before_upgrade", True))


def _backup_setting(config: Config, name: str, default: Any) -> Any:
    section = getattr(config, "backup", None)
    return default if section is None else getattr(section, name, default)


def backup_destination(config: Config) -> Path:
    """``[backup] destination``, else the default: data_dir/backups."""
    configured = _backup_setting(config, "destination", None)
    if configured:
        return Path(configured)
    try:
        from hardmail.ops.backup.catalog import default_destination
    except ImportError:  # pragma: no cover - the catalog module is part of every release
        return config.data_dir / "backups"
    return Path(default_destination(config.data_dir))


async def backup_before_upgrade(config: Config, current: str | None, target: str,
                                config_file: Path | None = None) -> Path | None:
    """A full, verified backup before the schema goes from ``current`` to ``target``: the archive,
    or None when ``[backup] before_upgrade = false``. Raises UpgradeBackupFailed."""
    if not backup_enabled(config):
        return None
    revisions: dict[str, Any] = {"from": current, "to": target}
    started = time.monotonic()
    try:
        archive = await _create_backup(config, config_file)
    except Exception as exc:
        error = _one_line(exc)
        log_event("schema.upgrade_backup", level="error", result="failure", error=error, **revisions)
        raise UpgradeBackupFailed(f"cannot upgrade the database schema from {current} to {target}: the backup "
                                  f"before it failed: {error}", BACKUP_FAILED_HINT) from exc
    log_event("schema.upgrade_backup", result="success", archive=str(archive),
              seconds=round(time.monotonic() - started, 3), **revisions)
    return archive


async def _create_backup(config: Config, config_file: Path | None) -> Path:
    from hardmail.ops.backup.create import BackupRequest, create_backup

    recipients = tuple(str(r) for r in _backup_setting(config, "recipients", ()) or ())
    request = BackupRequest(destination=backup_destination(config), recipients=recipients, verify=True,
                            reason="pre-upgrade", config_file=config_file)
    result = await create_backup(config, request, None)
    return Path(result.archive_path)


def _one_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text or type(exc).__name__


def config_file_in_use(named: Path | None) -> Path | None:
    """The configuration file a command reads (as ``hardmail.config.load`` chooses it), absolute."""
    from hardmail.config.load import config_file_path

    return config_file_path(named)


# --- the rehearsal (--dry-run) ------------------------------------------------------------

Shape = dict[str, dict[str, str]]  # table -> {"column name" | "index name" | "unique name": description}


@dataclass(frozen=True)
class TableChange:
    table: str
    change: str  # "added", "removed" or "changed"
    details: tuple[str, ...]  # "+ column frozen BOOLEAN NOT NULL", "- index ix_x (a)", "~ column x: A → B"
    rows_before: int | None = None
    rows_after: int | None = None


@dataclass(frozen=True)
class RehearsalReport:
    """What ``hardmail upgrade --dry-run`` found; ``seconds``: the time the migrations took."""

    database: str  # the database rehearsed on (password masked)
    method: str  # how the live database was kept unchanged
    result: migrations.UpgradeResult
    tables: tuple[TableChange, ...] = field(default=())

    @property
    def seconds(self) -> float:
        return self.result.seconds

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database, "method": self.method, "live_database_changed": False,
            "from": self.result.before, "to": self.result.after, "seconds": round(self.seconds, 3),
            "migrations": steps_json(self.result),
            "tables": [{"table": t.table, "change": t.change, "details": list(t.details),
                        "rows_before": t.rows_before, "rows_after": t.rows_after} for t in self.tables],
        }


def steps_json(result: migrations.UpgradeResult) -> list[dict[str, Any]]:
    return [{"revision": step.revision, "description": step.description, "seconds": round(step.seconds, 3)}
            for step in result.steps]


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for PostgreSQL, or an in-memory database)."""
    return sqlite_database_file(url)


async def rehearse_upgrade(config: Config) -> RehearsalReport:
    """Apply the pending migrations where the live database does not change, and report (see
    the module text). Raises SchemaTooNew/SchemaUnrecognised, Unavailable."""
    url, source = config.database_url, sqlite_file(config.database_url)
    try:
        if source is None:
            return await _rehearse_on(url, database=describe_url(url),
                                      method="in a PostgreSQL transaction, rolled back")
        with tempfile.TemporaryDirectory(prefix="hardmail-upgrade-dry-run-") as scratch:
            copy = Path(scratch) / "hardmail.db"
            await asyncio.to_thread(copy_sqlite, source, copy)
            return await _rehearse_on(f"sqlite+aiosqlite:///{copy}", database=str(source),
                                      method="on a copy made with SQLite's online backup API, deleted after")
    except (DBAPIError, OSError, sqlite3.Error) as exc:
        raise unavailable(url, exc) from exc


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of the SQLite database ``source`` (only read; a running server may write).
    Opened for writing all the same: a read-only connection to a database in WAL mode leaves its
    -wal and -shm files behind, which the last connection that can write removes."""
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # it holds password hashes
    with contextlib.closing(sqlite3.connect(f"file:{quote(str(source.absolute()))}?mode=rw", uri=True)) as live, \
            contextlib.closing(sqlite3.connect(target)) as copy:
        live.backup(copy)


async def _rehearse_on(url: str, *, database: str, method: str) -> RehearsalReport:
    """The migrations in one transaction that is rolled back (on a copy too: it is thrown away)."""
    engine = create_engine_for(url)
    try:
        await checked_state(engine)
        async with migrations.migration_connection(for_writing(engine)) as connection:
            transaction = await connection.begin()
            try:
                await migrations.take_migration_lock(connection)
                result, tables = await connection.run_sync(_rehearse)
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()
    return RehearsalReport(database, method, result, tables)


def _rehearse(connection: Connection) -> tuple[migrations.UpgradeResult, tuple[TableChange, ...]]:
    state = migrations.read_state_of(connection).check()
    if not state.pending:
        return migrations.UpgradeResult(state.current, state.head), ()
    before = schema_shape(connection)
    rows_before = {table: _count(connection, table) for table in before}
    result = migrations.apply_pending(connection)
    changes = compare_shapes(before, schema_shape(connection))
    return result, tuple(
        TableChange(table, change, details, rows_before.get(table),
                    None if change == "removed" else _count(connection, table))
        for table, change, details in changes)


def schema_shape(connection: Connection) -> Shape:
    """Every table's columns, indexes and unique constraints, described (alembic_version left out)."""
    inspector = sa.inspect(connection)
    shape: Shape = {}
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        items = {f"column {c['name']}": _column_text(c, connection) for c in inspector.get_columns(table)}
        items.update({f"index {i['name']}": _columns_text(i["column_names"], i.get("unique", False))
                      for i in inspector.get_indexes(table) if not i.get("duplicates_constraint")})
        items.update({f"unique {u['name']}": _columns_text(u["column_names"], False)
                      for u in inspector.get_unique_constraints(table)})
        shape[table] = items
    return shape


def _column_text(column: Any, connection: Connection) -> str:
    text = str(column["type"].compile(dialect=connection.dialect))
    if not column.get("nullable", True):
        text += " NOT NULL"
    if column.get("default") is not None:
        text += f" DEFAULT {column['default']}"
    return text


def _columns_text(columns: Any, unique: bool) -> str:
    return "(" + ", ".join(str(c) for c in columns) + ")" + (" unique" if unique else "")


def compare_shapes(before: Shape, after: Shape) -> list[tuple[str, str, tuple[str, ...]]]:
    """(table, "added" | "removed" | "changed", details) for every table that differs."""
    changes = []
    for table in sorted(before.keys() | after.keys()):
        old, new = before.get(table), after.get(table)
        if old is None or new is None:
            kind, items = ("added", new) if old is None else ("removed", old)
            sign = "+" if kind == "added" else "-"
            changes.append((table, kind, tuple(f"{sign} {name} {text}" for name, text in (items or {}).items())))
            continue
        details = [f"+ {name} {new[name]}" for name in new if name not in old]
        details += [f"- {name} {old[name]}" for name in old if name not in new]
        details += [f"~ {name}: {old[name]} → {new[name]}" for name in old if name in new and old[name] != new[name]]
        if details:
            changes.append((table, "changed", tuple(details)))
    return changes


def _count(connection: Connection, table: str) -> int:
    return int(connection.scalar(sa.select(sa.func.count()).select_from(sa.table(table))) or 0)
