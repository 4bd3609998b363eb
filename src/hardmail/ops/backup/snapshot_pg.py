"""The PostgreSQL snapshot of a backup: one REPEATABLE READ, read-only transaction held from
before the files are taken until the export is written, so that everything read is the database
as of one moment (:mod:`hardmail.ops.backup.snapshot` explains the order and the corrections).

Two forms go into the archive:

- ``database/tables/<table>.jsonl``: a logical export of every table of
  :data:`hardmail.store.sql.tables.metadata` that exists, in foreign-key order, with the
  corrections applied (this is the copy that agrees with the files). Encoding, one JSON object per
  line whose keys are the table's column names: NULL is ``null``; booleans, integers, floats and
  text are JSON values; a ``DateTime`` column (``UtcDateTime``) holds an ISO 8601 string with its
  UTC offset (``2026-12-03T03:00:00.123456+00:00``); a ``LargeBinary`` column holds standard
  base64 with padding (RFC 4648 section 4). :func:`decode_row` turns a line back into the values
  SQLAlchemy inserts, using the column types of the table.
- ``database/postgres.dump``: ``pg_dump --format=custom --snapshot=<pg_export_snapshot()>`` of the
  same moment, made when ``pg_dump`` is on PATH; without the corrections (the server's reconcile
  at start-up repairs the few differences if an admin restores it with ``pg_restore``). The
  connection details come from the URL; the password only ever in the child's ``PGPASSWORD``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import DateTime, LargeBinary, Table, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.core.diskfull import is_disk_full
from hardmail.delivery.durable import make_private_dir
from hardmail.ops.backup.catalog import BackupError
from hardmail.ops.backup.manifest import DatabaseInfo, FileEntry
from hardmail.ops.backup.snapshot import Corrections, IndexView, store_member
from hardmail.ops.backup.tarstream import FastArchiveWriter
from hardmail.ops.log import log_event
from hardmail.store.sql.engine import create_engine_for
from hardmail.store.sql.migrate import effective_revision
from hardmail.store.sql.tables import metadata
from hardmail.store.sql.tables_mailbox import mailbox_folders, mailbox_messages
from hardmail.store.sql.tables_queue import queue_messages

TABLES_MEMBER = "database/tables"
DUMP_MEMBER = "database/postgres.dump"
_BATCH = 2000
Row = dict[str, Any]


def table_member(name: str) -> str:
    return f"{TABLES_MEMBER}/{name}.jsonl"


def encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def decode_row(table: Table, value: dict[str, Any]) -> Row:
    """A line of ``<table>.jsonl`` (parsed) as the values to insert into ``table``."""
    row: Row = {}
    for column in table.columns:
        if column.name not in value:
            continue
        item = value[column.name]
        if item is not None and _is_type(column.type, DateTime):
            item = datetime.fromisoformat(item)
        elif item is not None and _is_type(column.type, LargeBinary):
            item = base64.b64decode(item)
        row[column.name] = item
    return row


def _is_type(column_type: Any, kind: type) -> bool:
    """A type decorator (``UtcDateTime``) counts as its implementation type."""
    return isinstance(column_type, kind) or isinstance(getattr(column_type, "impl", None), kind)


class PostgresSnapshot:
    """The PostgreSQL side of a backup, as :mod:`hardmail.ops.backup.create` drives it (the same
    steps as :class:`hardmail.ops.backup.snapshot.SqliteSnapshot`): ``snapshot()``,
    ``read_view()``, ``start_dump()``, ``store()``, ``info()``, ``close()``."""

    def __init__(self, url: str, work_dir: Path) -> None:
        self.url = url
        self.work_dir = work_dir
        self.snapshot_id = ""
        self.tables: set[str] = set()
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None
        self._dump: asyncio.subprocess.Process | None = None
        self._dumped = False

    @property
    def conn(self) -> AsyncConnection:
        assert self._conn is not None, "open() first"
        return self._conn

    async def snapshot(self) -> None:
        try:
            await self._open()
        except Exception as exc:
            if is_disk_full(exc):
                raise
            raise BackupError(f"cannot read the PostgreSQL database (storage.url): {_first_line(exc)}",
                              "check that the database server is reachable and storage.url is right") from None

    async def _open(self) -> None:
        self._engine = create_engine_for(self.url)
        connection = await self._engine.connect()
        self._conn = await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await self._conn.begin()
        self.snapshot_id = str(await self._conn.scalar(text("SELECT pg_export_snapshot()")))
        self.tables = set(await self._conn.run_sync(lambda sync: inspect(sync).get_table_names()))

    async def close(self) -> None:
        if self._dump is not None and self._dump.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._dump.kill()
            await self._dump.wait()
        with contextlib.suppress(Exception):
            if self._conn is not None:
                await self._conn.rollback()
                await self._conn.close()
        if self._engine is not None:
            await self._engine.dispose()

    def info(self) -> DatabaseInfo:
        return DatabaseInfo("postgresql", TABLES_MEMBER, DUMP_MEMBER if self._dumped else None)

    async def store(self, writer: FastArchiveWriter, corrections: Corrections, notes: Counter[str]) -> list[FileEntry]:
        """Export the corrected tables, wait for pg_dump, store them all."""
        tables = self.work_dir / "tables"
        make_private_dir(tables)
        members = await self.export(tables, corrections)
        dump = self.work_dir / "postgres.dump"
        if self._dump is not None:
            problem = await finish_dump(self._dump)
            if problem:
                notes["pg_dump_failed"] = 1
                log_event("backup.pg_dump_failed", level="warning", error=problem)
            else:
                os.chmod(dump, 0o600)
                members.append((DUMP_MEMBER, dump))
                self._dumped = True
        return [await asyncio.to_thread(store_member, writer, member, path) for member, path in members]

    async def read_view(self) -> IndexView:
        view = IndexView()
        if "alembic_version" in self.tables:
            revisions = sorted(await self.conn.scalars(text("SELECT version_num FROM alembic_version")))
            view.schema_revision = effective_revision(revisions)
        if {"mailbox_folders", "mailbox_messages"} <= self.tables:
            f = mailbox_folders.c
            for row in await self.conn.execute(select(f.id, f.account, f.name, f.uidnext, f.highestmodseq)):
                view.add_folder(*row)
            m = mailbox_messages.c
            result = await self.conn.stream(select(m.folder_id, m.uid, m.name, m.flags, m.size))
            async for part in result.partitions(_BATCH):
                for row in part:
                    view.add_message(*row)
        if "queue_messages" in self.tables:
            view.queue_ids = set(await self.conn.scalars(select(queue_messages.c.queue_id)))
        return view

    async def start_dump(self) -> None:
        """``pg_dump`` of the snapshot into the work directory, running while the files are taken
        (not when pg_dump is not installed)."""
        program = shutil.which("pg_dump")
        if program is None:
            return
        target = self.work_dir / "postgres.dump"
        self._dump = await asyncio.create_subprocess_exec(
            program, "--format=custom", f"--snapshot={self.snapshot_id}", "--no-password", f"--file={target}",
            env=dump_environment(self.url), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def export(self, directory: Path, corrections: Corrections) -> list[tuple[str, Path]]:
        """Write ``<table>.jsonl`` of every existing table into ``directory``; (member, file) each."""
        written = []
        for table in metadata.sorted_tables:
            if table.name not in self.tables:
                continue
            path = directory / f"{table.name}.jsonl"
            fix, extra = row_fixer(table.name, corrections)
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
                result = await self.conn.stream(select(table))
                async for part in result.partitions(_BATCH):
                    rows = [dict(row._mapping) for row in part]
                    await asyncio.to_thread(write_rows, handle, rows, fix)
                await asyncio.to_thread(write_rows, handle, extra, None)
            written.append((table_member(table.name), path))
        return written


async def finish_dump(process: asyncio.subprocess.Process) -> str:
    """Wait for pg_dump; "" when it succeeded, else the first line it printed."""
    _, errors = await process.communicate()
    if process.returncode == 0:
        return ""
    lines = errors.decode("utf-8", "replace").strip().splitlines()
    return lines[0] if lines else f"pg_dump exited with status {process.returncode}"


def dump_environment(url: str) -> dict[str, str]:
    """The child's environment: the connection details of ``url`` as libpq variables."""
    parsed = make_url(url)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    values = {"PGHOST": parsed.host, "PGPORT": parsed.port, "PGUSER": parsed.username,
              "PGPASSWORD": parsed.password, "PGDATABASE": parsed.database}
    ssl = parsed.query.get("sslmode") or parsed.query.get("ssl")
    if isinstance(ssl, str):
        values["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(ssl.lower(), ssl)
    env.update({key: str(value) for key, value in values.items() if value not in (None, "")})
    return env


def row_fixer(table: str, corrections: Corrections) -> tuple[Callable[[Row], Row | None], list[Row]]:
    """How each exported row of ``table`` is corrected (None: left out), and the rows added."""
    if table == "mailbox_messages":
        dropped = corrections.dropped_keys()
        added = [row for rows in corrections.added.values() for row in rows]
        return (lambda row: None if (row["folder_id"], row["uid"]) in dropped else row), added
    if table == "mailbox_vanished":
        replaced = {(t["folder_id"], t["uid"]) for t in corrections.tombstones}
        return (lambda row: None if (row["folder_id"], row["uid"]) in replaced else row), list(corrections.tombstones)
    if table == "mailbox_folders":
        return (lambda row: {**row, **corrections.folders.get(row["id"], {})}), []
    if table == "mailbox_accounts":
        return (lambda row: {**row, **corrections.accounts.get(row["account"], {})}), []
    if table in ("queue_messages", "queue_recipients"):
        gone = corrections.queue_dropped
        return (lambda row: None if row["queue_id"] in gone else row), []
    return (lambda row: row), []


def write_rows(handle: IO[str], rows: list[Row], fix: Callable[[Row], Row | None] | None) -> None:
    lines = []
    for row in rows:
        fixed = row if fix is None else fix(row)
        if fixed is not None:
            lines.append(json.dumps({k: encode_value(v) for k, v in fixed.items()}, ensure_ascii=False,
                                    allow_nan=False))
    if lines:
        handle.write("\n".join(lines) + "\n")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
