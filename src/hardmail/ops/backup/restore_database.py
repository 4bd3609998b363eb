"""The database part of a full restore: the SQLite copy put in place, or a PostgreSQL archive
restored into an empty PostgreSQL database (``pg_restore`` of ``database/postgres.dump`` when
both are there, else the logical export) or into a new SQLite database in the restore
directory; then the schema migrated to the newest revision this hardmail knows.

The logical import creates the schema at the archive's revision with the packaged Alembic
migrations, then inserts the rows of ``database/tables/<table>.jsonl`` table by table in
foreign-key order (values converted by the column types of that schema: timestamps from ISO 8601
text, booleans from numbers), resets PostgreSQL's id sequences, and lets the migrations bring it
to the newest revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Boolean, DateTime, MetaData, Table, func, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError

from hardmail.delivery.durable import fsync_dir
from hardmail.ops.backup.manifest import Manifest
from hardmail.store import open_store
from hardmail.store.ports import StoreError
from hardmail.store.sql.engine import create_engine_for, describe_url
from hardmail.store.sql.migrate import WRITTEN_BY_KEY, alembic_config, hardmail_version, upgrade_database

ProgressCallback = Callable[[str, int, int], None]
TABLE_SUFFIX = ".jsonl"
_BATCH_ROWS = 1000
_SKIPPED_TABLES = frozenset({"alembic_version"})


class DatabaseRestoreError(Exception):
    """The database cannot be restored; ``str()`` is one line for an admin (never a password)."""


@dataclass(frozen=True)
class DatabaseResult:
    shown: str  # where it went, for the admin (a URL without its password)
    url: str | None  # the PostgreSQL URL restored into; None: SQLite at DIR/hardmail.db
    schema_from: str | None
    schema_to: str | None
    notes: tuple[str, ...] = ()


def check_restorable(manifest: Manifest, database_url: str | None,
                     member_file: Callable[[str], Path | None] = lambda name: None) -> None:
    """Refuse, before any file is written, what this hardmail cannot restore. ``member_file``:
    where a member of the archive was staged (to read which hardmail wrote the database)."""
    if database_url is not None:
        if manifest.database.kind != "postgresql":
            raise _error("--database-url is for archives of a server on PostgreSQL; this archive holds an SQLite "
                         "database (restore it without --database-url)")
        if not database_url.startswith(("postgresql://", "postgresql+asyncpg://")):
            raise _error(f"{describe_url(database_url)} is not a PostgreSQL URL (postgresql+asyncpg://USER@HOST/DB)")
    unknown = unknown_revisions(manifest.schema_revision)
    if unknown:
        raise _error(_too_new(", ".join(unknown), (written_by(manifest, member_file), manifest.hardmail_version)))


def _too_new(revision: str, writers: tuple[str | None, ...]) -> str:
    """The refusal of a database from a newer hardmail, worded as the server words it
    (:func:`hardmail.store.sql.migrate._problem_of`): naming the first of ``writers`` (the
    database's own record, then the manifest's) that is not this hardmail's version."""
    ours = hardmail_version()
    writer = next((found for found in writers if found and found != ours), None)
    if writer is not None:
        return (f"the archive's database was last upgraded by hardmail {writer} (schema revision {revision}), newer "
                f"than this hardmail {ours}; restore it with hardmail {writer} or newer")
    return (f"the archive's database has schema revision {revision}, written by a hardmail newer than this hardmail "
            f"{ours}; restore it with that newer hardmail")


def written_by(manifest: Manifest, member_file: Callable[[str], Path | None]) -> str | None:
    """The archived database's ``schema.written_by_version`` setting, when it can be read."""
    if manifest.database.kind == "sqlite":
        path = member_file(manifest.database.member)
        if path is None:
            return None
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = connection.execute("SELECT value FROM settings WHERE key = ?", (WRITTEN_BY_KEY,)).fetchone()
            finally:
                connection.close()
        except sqlite3.Error:
            return None
        return None if row is None or row[0] is None else str(row[0])
    path = member_file(f"{manifest.database.member}/settings{TABLE_SUFFIX}")
    return None if path is None else _setting_in_export(path)


def _setting_in_export(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if isinstance(row, dict) and row.get("key") == WRITTEN_BY_KEY and row.get("value") is not None:
                        return str(row["value"])
    except OSError:
        return None
    return None


def unknown_revisions(revision: str | None) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    unknown = []
    for part in _revisions(revision):
        try:
            found = script.get_revision(part)
        except Exception:  # alembic raises several kinds for an unknown or ambiguous id
            found = None
        if found is None:
            unknown.append(part)
    return unknown


def _revisions(revision: str | None) -> list[str]:
    return [part.strip() for part in (revision or "").split(",") if part.strip()]


async def restore(manifest: Manifest, database_dir: Path, sqlite_path: Path, database_url: str | None,
                  progress: ProgressCallback | None = None) -> DatabaseResult:
    """Put the extracted database members (under ``database_dir``) to use; see the module text."""
    member_root = PurePosixPath(manifest.database.member)
    if manifest.database.kind == "sqlite":
        _move_sqlite(database_dir / PurePosixPath(*member_root.parts[1:]), sqlite_path)
        return await _migrated(_sqlite_url(sqlite_path), f"SQLite {sqlite_path}", None, ())
    tables = database_dir / PurePosixPath(*member_root.parts[1:])
    if database_url is None:
        await import_logical(tables, _sqlite_url(sqlite_path), manifest.schema_revision, progress)
        note = "the PostgreSQL archive was imported into a new SQLite database; pass --database-url to restore " \
               "into PostgreSQL instead"
        return await _migrated(_sqlite_url(sqlite_path), f"SQLite {sqlite_path}", None, (note,))
    await require_empty(database_url)
    dump = _dump_path(manifest, database_dir)
    if dump is not None and shutil.which("pg_restore"):
        await asyncio.to_thread(pg_restore, dump, database_url)
        how = "restored with pg_restore"
    else:
        await import_logical(tables, database_url, manifest.schema_revision, progress)
        how = "imported from the logical export" + ("" if dump is None else " (pg_restore is not installed)")
    notes = (f"the database was {how}; storage.url of the configuration now names it",)
    return await _migrated(database_url, describe_url(database_url), database_url, notes)


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _error(message: str) -> DatabaseRestoreError:
    return DatabaseRestoreError(message)


def _move_sqlite(extracted: Path, target: Path) -> None:
    if not extracted.is_file():
        raise _error("the archive holds no database copy (database/hardmail.db); it is damaged")
    os.rename(extracted, target)
    fsync_dir(target.parent)


def _dump_path(manifest: Manifest, database_dir: Path) -> Path | None:
    if not manifest.database.dump_member:
        return None
    path = database_dir / PurePosixPath(*PurePosixPath(manifest.database.dump_member).parts[1:])
    return path if path.is_file() else None


async def _migrated(url: str, shown: str, restored_url: str | None, notes: tuple[str, ...]) -> DatabaseResult:
    """Open the restored database and migrate it to the newest revision: (from, to)."""
    try:
        store = await open_store(url)
        try:
            before = await store.schema_version()  # type: ignore[attr-defined]
            await upgrade_database(url)  # a restored copy: the archive is its backup
            after = await store.schema_version()  # type: ignore[attr-defined]
        finally:
            await store.close()
    except (StoreError, SQLAlchemyError, OSError) as exc:
        raise _error(f"the restored database at {shown} cannot be opened or migrated: {_first_line(exc)}") from None
    return DatabaseResult(shown, restored_url, before, after, notes)


# --- PostgreSQL ------------------------------------------------------------------------------

async def require_empty(url: str) -> None:
    """The database at ``url`` must have no tables (a restore never merges into one)."""
    engine = create_engine_for(url)
    try:
        async with engine.connect() as connection:
            count = (await connection.execute(text(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"))).scalar_one()
    except (SQLAlchemyError, OSError) as exc:
        raise _error(f"cannot use the database {describe_url(url)}: {_first_line(exc)}") from None
    finally:
        await engine.dispose()
    if count:
        raise _error(f"the database {describe_url(url)} is not empty ({count} tables); restore into a new, empty "
                     "database (createdb NAME)")


def pg_restore(dump: Path, url: str) -> None:
    """``pg_restore`` the custom-format dump into the database of ``url`` (its password is
    passed in the environment, never on the command line)."""
    parsed = make_url(url)
    args = ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
            "--dbname", parsed.database or ""]
    for flag, value in (("--host", parsed.host), ("--port", parsed.port), ("--username", parsed.username)):
        if value:
            args += [flag, str(value)]
    env = {**os.environ, "PGPASSWORD": parsed.password or ""} if parsed.password else dict(os.environ)
    done = subprocess.run([*args, str(dump)], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()] or done.stderr.splitlines()
        raise _error(f"pg_restore into {describe_url(url)} failed: {(errors or ['no output'])[0][:300]}")


# --- the logical import ----------------------------------------------------------------------

async def import_logical(tables_dir: Path, url: str, revision: str | None,
                         progress: ProgressCallback | None = None) -> None:
    """Create the schema at ``revision`` in the (new, empty) database of ``url`` and insert the
    rows of ``tables_dir/<table>.jsonl``; in a thread with its own event loop, since parsing
    and converting every row is CPU work the caller's loop should not wait in."""
    await asyncio.to_thread(asyncio.run, _import_logical(tables_dir, url, revision, progress))


async def _import_logical(tables_dir: Path, url: str, revision: str | None,
                          progress: ProgressCallback | None) -> None:
    engine = create_engine_for(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_create_schema, revision)
        async with engine.begin() as connection:
            await connection.run_sync(_insert_tables, tables_dir, revision, progress)
    except SQLAlchemyError as exc:
        raise _error(f"the logical export cannot be imported into {describe_url(url)}: {_first_line(exc)}") from None
    finally:
        await engine.dispose()


def _create_schema(connection: Connection, revision: str | None) -> None:
    config = alembic_config(connection)
    for part in _revisions(revision) or ["heads"]:
        command.upgrade(config, part)


def _insert_tables(connection: Connection, tables_dir: Path, revision: str | None,
                   progress: ProgressCallback | None) -> None:
    schema = MetaData()
    schema.reflect(connection)
    files = {path.name.removesuffix(TABLE_SUFFIX): path for path in _table_files(tables_dir)}
    unknown = sorted(set(files) - set(schema.tables) - _SKIPPED_TABLES)
    if unknown:
        raise _error(f"the logical export has table {unknown[0]}, which the schema at revision {revision} does "
                     "not have; the archive is damaged")
    total = sum(path.stat().st_size for path in files.values())
    done = 0
    for table in schema.sorted_tables:
        path = files.get(table.name)
        if path is None or table.name in _SKIPPED_TABLES:
            continue
        for batch in _batches(path, table, connection.dialect.name):
            connection.execute(table.insert(), batch)
        done += path.stat().st_size
        if progress is not None:
            progress("importing the database", done, total)
    if connection.dialect.name == "postgresql":
        _reset_sequences(connection, schema)


def _table_files(tables_dir: Path) -> list[Path]:
    if not tables_dir.is_dir():
        raise _error("the archive holds no logical export of the database (database/tables/); it is damaged")
    return sorted(path for path in tables_dir.iterdir() if path.name.endswith(TABLE_SUFFIX))


def _batches(path: Path, table: Table, dialect: str) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise _error(f"database/tables/{path.name} line {number} is not JSON; the archive is damaged") from None
            batch.append(_converted(row, table, dialect, f"{path.name} line {number}"))
            if len(batch) >= _BATCH_ROWS:
                yield batch
                batch = []
    if batch:
        yield batch


def _converted(row: Any, table: Table, dialect: str, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise _error(f"database/tables/{where} is not a JSON object; the archive is damaged")
    values = {}
    for key, value in row.items():
        column = table.columns.get(key)
        if column is None:
            raise _error(f"database/tables/{where}: column {key!r} is not in table {table.name} of the schema "
                         "at the archive's revision")
        values[key] = _value(value, column.type, dialect, where)
    return values


def _value(value: Any, kind: Any, dialect: str, where: str) -> Any:
    if value is None:
        return None
    if isinstance(kind, DateTime):
        moment = _timestamp(value, where)
        return moment.replace(tzinfo=None) if dialect == "sqlite" or not kind.timezone else moment
    if isinstance(kind, Boolean):
        return bool(value)
    return value


def _timestamp(value: Any, where: str) -> datetime:
    """A timestamp of the export: ISO 8601 text (UTC when it names no zone), or epoch seconds."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        moment = datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        raise _error(f"database/tables/{where}: {str(value)[:40]!r} is not a timestamp") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _reset_sequences(connection: Connection, schema: MetaData) -> None:
    """After rows were inserted with their ids, the sequences continue after the largest one."""
    for table in schema.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) != 1 or not str(key[0].type).upper().startswith(("INTEGER", "BIGINT", "SMALLINT")):
            continue
        sequence = connection.execute(select(func.pg_get_serial_sequence(table.name, key[0].name))).scalar()
        if sequence is None:
            continue
        largest = connection.execute(select(func.max(key[0]))).scalar()
        connection.execute(select(func.setval(sequence, (largest or 0) + 1, False)))


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:300]
