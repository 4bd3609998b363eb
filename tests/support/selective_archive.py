"""Test support for the selective-restore tests: an archive in the ``hardmail-backup/1`` format
(spec13) made from a real data directory, and a data directory made with the real store, admin
and mailbox code.

:func:`write_archive` is a small stand-in for ``create_backup`` (written at the same time by
another part): the SQLite online-backup copy (or a logical export as ``database/tables/*.jsonl``,
as for PostgreSQL), every file of the data directory but those never stored, the configuration
file, and ``MANIFEST.json`` last; with ``parent`` an incremental one that stores only files whose
identity the parent's manifest does not have (a Maildir file renamed for a flag change keeps the
parent's bytes, under its old member name); with ``recipients`` encrypted with age.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import create_engine, select

from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.mailbox import MailboxStore
from hardmail.mailbox.files import split_name
from hardmail.ops.backup.archive import ArchiveWriter, encrypt_file
from hardmail.ops.backup.manifest import DatabaseInfo, FileEntry, Manifest, archive_file_name, archive_name
from hardmail.store import open_store
from hardmail.store.ports import Store
from hardmail.store.sql.tables import metadata

NEVER_STORED_TOP = {"incoming", "run", "backup-state", "backups"}
_counter = [0]


def config_for(data_dir: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {"server": {"hostname": "mail.example.test", "data_dir": str(data_dir)},
                           "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Config.model_validate(raw)


@dataclass
class Server:
    """A data directory opened with the real store, admin service and mailbox store (no listeners)."""

    config: Config
    store: Store
    mailboxes: MailboxStore

    @property
    def admin(self) -> AdminService:
        return AdminService(self.store, self.config.auth.argon2, mailboxes=self.mailboxes)


async def open_server(config: Config) -> Server:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(config.database_url)
    await store.migrate()
    return Server(config, store, build_mailbox_store(config, store, SystemClock()))


def _next_name(kind: Literal["full", "incremental"]) -> str:
    _counter[0] += 1
    return archive_name(kind, datetime.now(UTC) + timedelta(microseconds=_counter[0]))


def write_archive(data_dir: Path, destination: Path, *, config_file: Path | None = None,
                  parent: Manifest | None = None, database: Literal["sqlite", "tables"] = "sqlite",
                  recipients: Sequence[str] = (), tables: dict[str, bytes] | None = None) -> tuple[Path, Manifest]:
    """Archive ``data_dir`` into ``destination``; returns the archive's path and its manifest.
    ``database="tables"``: a logical export, of ``tables`` (:func:`export_tables` of a PostgreSQL
    store) or else of the data directory's SQLite database."""
    destination.mkdir(parents=True, exist_ok=True)
    kind: Literal["full", "incremental"] = "full" if parent is None else "incremental"
    name = _next_name(kind)
    plain = destination / archive_file_name(name, encrypted=False)
    writer = ArchiveWriter(plain)
    known = _identities(parent)
    entries = [_store_file(writer, name, data_dir, path, known) for path in _data_files(data_dir)]
    if config_file is not None:
        entries.append(_stored(writer, name, f"config/{config_file.name}", config_file))
    info, database_entries = _database(writer, name, data_dir, destination, database, tables)
    manifest = Manifest(name=name, kind=kind, parent=None if parent is None else parent.name,
                        chain=(*(parent.chain if parent else ()), name), created_at=datetime.now(UTC).isoformat(),
                        hardmail_version="test", schema_revision=None, database=info, data_dir=str(data_dir),
                        config_file=None if config_file is None else str(config_file),
                        files=(*entries, *database_entries))
    writer.add_bytes("MANIFEST.json", manifest.to_json())
    writer.close()
    if not recipients:
        return plain, manifest
    encrypted = destination / archive_file_name(name, encrypted=True)
    encrypt_file(plain, encrypted, recipients)
    plain.unlink()
    return encrypted, manifest


def _data_files(data_dir: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(data_dir):
        relative = Path(root).relative_to(data_dir)
        if relative.parts and relative.parts[0] in NEVER_STORED_TOP:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not (relative.parts and relative.parts[0] == "mail" and d == "tmp"))
        for file_name in sorted(files):
            if file_name.startswith("hardmail.db") or file_name == "hardmail.lock":
                continue
            found.append(Path(root) / file_name)
    return found


def _identity(path: str, size: int, mtime_ns: int) -> tuple[Any, ...]:
    parts = path.split("/")
    if parts[:2] == ["files", "mail"] and len(parts) > 3 and parts[-2] in ("cur", "new"):
        return ("message", "/".join(parts[:-2]), split_name(parts[-1])[0], size)
    return ("file", path, size, mtime_ns)


def _identities(parent: Manifest | None) -> dict[tuple[Any, ...], FileEntry]:
    if parent is None:
        return {}
    return {_identity(e.path, e.size, e.mtime_ns): e for e in parent.files
            if e.path.startswith("files/")}


def _store_file(writer: ArchiveWriter, name: str, data_dir: Path, path: Path,
                known: dict[tuple[Any, ...], FileEntry]) -> FileEntry:
    member = "files/" + path.relative_to(data_dir).as_posix()
    stat = path.stat()
    earlier = known.get(_identity(member, stat.st_size, stat.st_mtime_ns))
    if earlier is not None:
        return FileEntry(member, earlier.size, earlier.sha256, stat.st_mode & 0o7777, stat.st_mtime_ns,
                         earlier.archive, earlier.member)
    return _stored(writer, name, member, path)


def _stored(writer: ArchiveWriter, name: str, member: str, path: Path) -> FileEntry:
    size, sha256, mode, mtime_ns = writer.add_file(member, path)
    return FileEntry(member, size, sha256, mode, mtime_ns, name, member)


def _database(writer: ArchiveWriter, name: str, data_dir: Path, scratch: Path, database: Literal["sqlite", "tables"],
              tables: dict[str, bytes] | None) -> tuple[DatabaseInfo, list[FileEntry]]:
    if database == "tables":
        entries = []
        for table, data in (tables if tables is not None else _exported_tables(data_dir / "hardmail.db")).items():
            member = f"database/tables/{table}.jsonl"
            size, sha256 = writer.add_bytes(member, data)
            entries.append(FileEntry(member, size, sha256, 0o600, 0, name, member))
        return DatabaseInfo("postgresql", "database/tables"), entries
    copy = scratch / f".{name}.db"
    source, target = sqlite3.connect(data_dir / "hardmail.db"), sqlite3.connect(copy)
    try:
        source.backup(target)  # the online-backup API: consistent while the server writes
    finally:
        source.close()
        target.close()
    try:
        return DatabaseInfo("sqlite", "database/hardmail.db"), [_stored(writer, name, "database/hardmail.db", copy)]
    finally:
        copy.unlink()


def _exported_tables(path: Path) -> dict[str, bytes]:
    """Every table as JSON lines (times as ISO 8601), as a PostgreSQL logical export gives them."""
    engine = create_engine(f"sqlite:///{path}")
    tables = {}
    try:
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                rows = [dict(row._mapping) for row in conn.execute(select(table))]
                tables[table.name] = b"".join(json.dumps(row, default=_json_value).encode() + b"\n" for row in rows)
    finally:
        engine.dispose()
    return tables


async def export_tables(store: Store) -> dict[str, bytes]:
    """Every table of ``store`` as JSON lines, read in one REPEATABLE READ transaction (PostgreSQL)."""
    engine = store.engine  # type: ignore[attr-defined]
    tables = {}
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        for table in metadata.sorted_tables:
            rows = [dict(row._mapping) for row in await conn.execute(select(table))]
            tables[table.name] = b"".join(json.dumps(row, default=_json_value).encode() + b"\n" for row in rows)
    return tables


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")
