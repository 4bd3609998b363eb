"""Backup archives for the verify and restore tests, in the ``hardmail-backup/1`` format of
docs/spec (``/work/wt/notes/spec13.md``), made from a real data directory: a database made by the
real store (SQLite file copied with the online backup API, or a PostgreSQL logical export plus
``pg_dump``) and the Maildir, spool and key files as they are on disk.

- :func:`make_data_dir` fills a data directory through the real services: accounts, folders
  (nested and non-ASCII), messages with flags and keywords, an expunged message, one delivered
  into ``new/``, a queued outbound message, the server key, DKIM and TLS files.
- :func:`build_archive` writes a full archive, or an incremental one after ``parent`` (files whose
  identity is in the parent's manifest are not stored again), optionally age-encrypted.
- :func:`rewrite_archive`, :func:`flip_member_byte`, :func:`drop_member`, :func:`add_member`,
  :func:`truncate_file` and :func:`flip_file_byte` damage archives for the verify tests.

It follows the spec rather than ``ops/backup/create.py`` (written at the same time by another
part); once that is merged, the same tests also run against archives ``create_backup`` made.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, select, text
from sqlalchemy.engine import make_url

from hardmail import __version__
from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.queue import DeliveryQueue
from hardmail.delivery.spool import OutboundSpool
from hardmail.mailbox import MailboxStore
from hardmail.mailbox.files import split_name
from hardmail.ops.backup.archive import ArchiveWriter, encrypt_file, iter_members, sha256_file
from hardmail.ops.backup.manifest import (
    ARCHIVE_SUFFIX,
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    DatabaseInfo,
    FileEntry,
    Kind,
    Manifest,
    archive_name,
)
from hardmail.store import open_store
from hardmail.store.sql.engine import create_engine_for
from hardmail.store.sql.tables import metadata

DOMAIN = "example.org"
ALICE = "alice@example.org"
BOB = "bob@example.org"
PASSWORD = "correct horse battery staple"
HOSTNAME = "mail.example.org"
NEVER_STORED_TOP = frozenset({"incoming", "run", "backup-state", "backups", "hardmail.lock"})
FOLDERS = ("Archive/2024", "Été")


@dataclass(frozen=True)
class BuiltArchive:
    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass
class SampleData:
    data_dir: Path
    database_url: str
    config: Config
    queue_ids: list[str] = field(default_factory=list)
    uids: dict[tuple[str, str], list[int]] = field(default_factory=dict)


def sample_config(data_dir: Path, database_url: str | None = None) -> Config:
    raw: dict[str, Any] = {
        "server": {"hostname": HOSTNAME, "data_dir": str(data_dir)},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "queue": {"run_delivery": False},
    }
    if database_url:
        raw["storage"] = {"url": database_url}
    return Config.model_validate(raw)


def message(subject: str, body: str = "hello") -> bytes:
    return (f"From: sender@example.net\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@example.net>\r\n\r\n{body}\r\n").encode()


# --- a data directory made by the real services ----------------------------------------------

async def make_data_dir(data_dir: Path, database_url: str | None = None, messages: int = 6) -> SampleData:
    """A data directory with two accounts, folders, flagged messages and a queued message."""
    config = sample_config(data_dir, database_url)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = await open_store(config.database_url)
    try:
        await store.migrate()
        mailboxes = MailboxStore(config.maildir_root, store.mailbox, HOSTNAME, SystemClock())
        admin = AdminService(store, config.auth.argon2, mailboxes=mailboxes)
        await admin.add_domain(DOMAIN)
        for address in (ALICE, BOB):
            await admin.add_account(address, PASSWORD)
            await mailboxes.ensure_account(address)
        sample = SampleData(data_dir, config.database_url, config)
        await _fill_mailboxes(mailboxes, sample, messages)
        await _deliver_into_new(config, mailboxes, sample)
        queue = DeliveryQueue(store.queue, OutboundSpool(config.spool_dir), SystemClock())
        sample.queue_ids.append(await queue.enqueue(ALICE, ["someone@example.net"], message("outbound"),
                                                    origin_account=ALICE))
    finally:
        await store.close()
    _write_key_files(data_dir)
    return sample


async def _fill_mailboxes(mailboxes: MailboxStore, sample: SampleData, count: int) -> None:
    for folder in FOLDERS:
        await mailboxes.create_folder(ALICE, folder)
    for folder in ("INBOX", *FOLDERS):
        uids = []
        for n in range(count):
            flags = [("\\Seen",), ("\\Seen", "\\Flagged"), (), ("\\Answered", "$Label1")][n % 4]
            appended = await mailboxes.append(ALICE, folder, message(f"{folder} {n}", "x" * (n * 97)), flags)
            uids.append(appended.uid)
        await mailboxes.store_flags(ALICE, folder, [uids[0]], "add", ["\\Deleted"])
        await mailboxes.expunge(ALICE, folder, [uids[0]])  # UIDs with a gap
        await mailboxes.store_flags(ALICE, folder, [uids[1]], "add", ["\\Draft"])
        sample.uids[(ALICE, folder)] = uids[1:]
    appended = await mailboxes.append(BOB, "INBOX", message("for bob"), ["\\Seen"])
    sample.uids[(BOB, "INBOX")] = [appended.uid]


async def _deliver_into_new(config: Config, mailboxes: MailboxStore, sample: SampleData) -> None:
    paths = await asyncio.to_thread(MaildirStore(config.maildir_root, HOSTNAME).deliver, [BOB], message("delivered"))
    [uid] = await mailboxes.deliver_indexed(BOB, "INBOX", paths)
    sample.uids[(BOB, "INBOX")].append(uid)


def _write_key_files(data_dir: Path) -> None:
    from hardmail.auth.server_key import load_or_create_server_key

    load_or_create_server_key(data_dir)
    for relative, body in (("dkim/example.org/default.key", b"-----BEGIN PRIVATE KEY-----\nx\n"),
                           ("tls/cert.pem", b"-----BEGIN CERTIFICATE-----\ny\n"),
                           ("tls/key.pem", b"-----BEGIN PRIVATE KEY-----\nz\n")):
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_bytes(body)
        path.chmod(0o600)


# --- building archives -----------------------------------------------------------------------

def build_archive(data_dir: Path, destination: Path, *, parent: BuiltArchive | None = None,
                  config_file: Path | None = None, external: Sequence[Path] = (),
                  recipients: Sequence[str] = (), database_url: str | None = None,
                  sidecar: bool = True) -> BuiltArchive:
    """A full archive of ``data_dir`` (an incremental one after ``parent``) in ``destination``.
    ``database_url``: the data directory's database is PostgreSQL there (else ``hardmail.db``).
    With ``HARDMAIL_TEST_BACKUP_BUILDER=core`` the archive is made by ``create_backup`` instead
    (``parent`` must then be the newest archive of ``destination``; ``external`` is not used)."""
    if os.environ.get("HARDMAIL_TEST_BACKUP_BUILDER") == "core":
        return _core_build(data_dir, destination, parent, config_file, recipients, database_url)
    destination.mkdir(parents=True, exist_ok=True, mode=0o700)
    kind: Kind = "incremental" if parent is not None else "full"
    name = _new_name(kind, parent)
    plain = destination / f".{name}.tmp{ARCHIVE_SUFFIX}"
    writer = ArchiveWriter(plain)
    try:
        with tempfile.TemporaryDirectory(prefix="backup-builder-") as scratch:
            snapshot = _snapshot(data_dir, database_url, Path(scratch))  # first, then the files (spec)
            entries = _file_members(writer, name, data_dir, parent, config_file, external)
            entries += [_add(writer, name, member, source) for member, source in snapshot.members]
            database, revision = snapshot.info, snapshot.revision
        manifest = Manifest(
            name=name, kind=kind, parent=parent.name if parent else None,
            chain=(*parent.manifest.chain, name) if parent else (name,),
            created_at=datetime.now(UTC).isoformat(), hardmail_version=__version__, schema_revision=revision,
            database=database, data_dir=str(data_dir.absolute()),
            config_file=str(config_file) if config_file else None, files=tuple(entries), notes={})
        writer.add_bytes(MANIFEST_MEMBER, manifest.to_json())
        writer.close()
    except BaseException:
        writer.abort()
        raise
    final = _finish(plain, destination, name, recipients)
    if sidecar:
        write_sidecar(final, manifest, recipients)
    return BuiltArchive(final, manifest)


def _core_build(data_dir: Path, destination: Path, parent: BuiltArchive | None, config_file: Path | None,
                recipients: Sequence[str], database_url: str | None) -> BuiltArchive:
    """The same archive made by ops/backup/create.py (once it is merged)."""
    from hardmail.ops.backup.create import BackupRequest, create_backup  # type: ignore[import-not-found]

    request = BackupRequest(destination=destination, incremental=parent is not None, recipients=tuple(recipients),
                            verify=False, reason="manual", config_file=config_file)
    result = asyncio.run(create_backup(sample_config(data_dir.absolute(), database_url), request))
    if parent is not None:
        assert result.manifest.parent == parent.name, "the parent of a core incremental is the newest archive"
    return BuiltArchive(result.archive_path, result.manifest)


def _new_name(kind: Any, parent: BuiltArchive | None) -> str:
    at = datetime.now(UTC)
    if parent is not None:
        stamp = parent.name.split("-")[1]
        earliest = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC) + timedelta(microseconds=1)
        at = max(at, earliest)
    return archive_name(kind, at)


def _finish(plain: Path, destination: Path, name: str, recipients: Sequence[str]) -> Path:
    if not recipients:
        final = destination / f"{name}{ARCHIVE_SUFFIX}"
        os.rename(plain, final)
        return final
    final = destination / f"{name}{ENCRYPTED_SUFFIX}"
    encrypt_file(plain, final, recipients)
    plain.unlink()
    return final


def write_sidecar(archive: Path, manifest: Manifest, recipients: Sequence[str] = ()) -> Path:
    """The catalog record ``<name>.json`` next to ``archive`` (no file names, no addresses)."""
    record = {
        "format": manifest.format, "name": manifest.name, "kind": manifest.kind, "parent": manifest.parent,
        "chain": list(manifest.chain), "created_at": manifest.created_at,
        "hardmail_version": manifest.hardmail_version, "schema_revision": manifest.schema_revision,
        "archive_file": archive.name, "archive_size": archive.stat().st_size,
        "archive_sha256": sha256_file(archive), "encrypted": bool(recipients), "recipients": list(recipients),
        "file_count": len(manifest.files),
        "stored_bytes": sum(entry.size for entry in manifest.stored_here()), "verify": None,
    }
    path = archive.parent / f"{manifest.name}.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def data_files(data_dir: Path) -> list[str]:
    """The data directory's files that an archive stores (relative paths), per the spec."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        relative = Path(root).relative_to(data_dir)
        top = relative.parts[0] if relative.parts else ""
        if not relative.parts:
            dirs[:] = [d for d in dirs if d not in NEVER_STORED_TOP]
        if top == "mail":
            dirs[:] = [d for d in dirs if d != "tmp"]
        for file_name in files:
            if not relative.parts and (file_name.startswith("hardmail.db") or file_name in NEVER_STORED_TOP):
                continue
            if file_name == "hardmail.lock":
                continue
            found.append((relative / file_name).as_posix())
    return sorted(found)


def _identity(path: str, size: int, mtime_ns: int) -> tuple[Any, ...]:
    parts = path.split("/")
    if parts[:2] == ["files", "mail"] and len(parts) >= 4 and parts[-2] in ("cur", "new"):
        return ("message", "/".join(parts[:-2]), split_name(parts[-1])[0], size)
    return ("file", path, size, mtime_ns)


def _always_stored(path: str) -> bool:
    return path == "files/server.key" or path.startswith(("config/", "database/"))


def _file_members(writer: ArchiveWriter, name: str, data_dir: Path, parent: BuiltArchive | None,
                  config_file: Path | None, external: Sequence[Path]) -> list[FileEntry]:
    sources = [(f"files/{relative}", data_dir / relative) for relative in data_files(data_dir)]
    if config_file is not None:
        sources.append((f"config/{config_file.name}", config_file))
    sources += [(f"external/{n}-{path.name}", path) for n, path in enumerate(external, 1)]
    previous = {}
    if parent is not None:
        previous = {_identity(e.path, e.size, e.mtime_ns): e for e in parent.manifest.files}
    entries = []
    for path, source in sources:
        info = source.stat()
        known = previous.get(_identity(path, info.st_size, info.st_mtime_ns))
        if known is not None and not _always_stored(path):
            entries.append(FileEntry(path, info.st_size, known.sha256, info.st_mode & 0o7777, info.st_mtime_ns,
                                     known.archive, known.member))
            continue
        size, sha, mode, mtime_ns = writer.add_file(path, source)
        entries.append(FileEntry(path, size, sha, mode, mtime_ns, name, path))
    return entries


# --- the database members --------------------------------------------------------------------

@dataclass
class _Snapshot:
    info: DatabaseInfo
    revision: str | None
    members: list[tuple[str, Path]]


def _snapshot(data_dir: Path, database_url: str | None, scratch: Path) -> _Snapshot:
    if database_url is None:
        copy = scratch / "hardmail.db"
        revision = sqlite_snapshot(data_dir / "hardmail.db", copy)
        return _Snapshot(DatabaseInfo("sqlite", "database/hardmail.db"), revision, [("database/hardmail.db", copy)])
    revision, dump = asyncio.run(postgres_export(database_url, scratch))
    members = [(f"database/tables/{path.name}", path) for path in sorted((scratch / "tables").iterdir())]
    if dump is not None:
        members.append(("database/postgres.dump", dump))
    info = DatabaseInfo("postgresql", "database/tables", "database/postgres.dump" if dump else None)
    return _Snapshot(info, revision, members)


def _add(writer: ArchiveWriter, name: str, member: str, source: Path) -> FileEntry:
    size, sha, mode, mtime_ns = writer.add_file(member, source)
    return FileEntry(member, size, sha, mode, mtime_ns, name, member)


def sqlite_snapshot(source: Path, copy: Path) -> str | None:
    """An online-backup copy of the SQLite database; returns its schema revision."""
    with sqlite3.connect(source) as live, sqlite3.connect(copy) as target:
        live.backup(target)
    copy.chmod(0o600)
    return sqlite_revision(copy)


def sqlite_revision(path: Path) -> str | None:
    connection = sqlite3.connect(path)
    try:
        rows = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.OperationalError:
        return None
    finally:
        connection.close()
    return ",".join(sorted(rows)) or None


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot export {type(value).__name__}")


async def postgres_export(url: str, scratch: Path) -> tuple[str | None, Path | None]:
    """Every table of the metadata that exists, as JSON lines, read in one REPEATABLE READ
    transaction, and ``pg_dump`` of its exported snapshot when pg_dump is installed."""
    tables_dir = scratch / "tables"
    tables_dir.mkdir()
    engine = create_engine_for(url)
    dump = None
    try:
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="REPEATABLE READ")
            async with connection.begin():
                snapshot = (await connection.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                existing = set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
                for table in metadata.sorted_tables:
                    if table.name in existing:
                        rows = (await connection.execute(select(table))).mappings().all()
                        lines = "".join(json.dumps(dict(row), default=_json_value) + "\n" for row in rows)
                        (tables_dir / f"{table.name}.jsonl").write_text(lines)
                revision = ",".join(sorted(row[0] for row in await connection.execute(
                    text("SELECT version_num FROM alembic_version")))) or None
                if shutil.which("pg_dump"):
                    dump = scratch / "postgres.dump"
                    await asyncio.to_thread(_pg_dump, url, str(snapshot), dump)
    finally:
        await engine.dispose()
    return revision, dump


def _pg_dump(url: str, snapshot: str, target: Path) -> None:
    parsed = make_url(url)
    args = ["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--file", str(target),
            "--host", parsed.host or "127.0.0.1", "--port", str(parsed.port or 5432),
            "--username", parsed.username or "postgres", parsed.database or ""]
    subprocess.run(args, check=True, capture_output=True)


# --- damage ----------------------------------------------------------------------------------

def rewrite_archive(archive: Path, change: Callable[[str, bytes], bytes | None],
                    extra: Sequence[tuple[str, bytes]] = ()) -> None:
    """Write ``archive`` (plain ``.tar.zst``) again with each member passed through ``change``
    (None drops it); ``extra`` members are added before the manifest."""
    members = [(info.name, info.mode, stream.read()) for info, stream in iter_members(archive)]
    replacement = archive.with_name(archive.name + ".new")
    writer = ArchiveWriter(replacement)
    for member, mode, data in members:
        if member == MANIFEST_MEMBER:
            for extra_name, extra_data in extra:
                writer.add_bytes(extra_name, extra_data)
        changed = change(member, data)
        if changed is not None:
            writer.add_bytes(member, changed, mode=mode)
    writer.close()
    os.replace(replacement, archive)


def flip_member_byte(archive: Path, member: str) -> None:
    def flip(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]

    rewrite_archive(archive, flip)


def drop_member(archive: Path, member: str) -> None:
    rewrite_archive(archive, lambda name, data: None if name == member else data)


def add_member(archive: Path, member: str, data: bytes) -> None:
    rewrite_archive(archive, lambda name, same: same, extra=[(member, data)])


def truncate_file(path: Path, keep: float = 0.6) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(int(size * keep))


def flip_file_byte(path: Path, at: float = 0.5) -> None:
    with open(path, "r+b") as handle:
        handle.seek(int(path.stat().st_size * at))
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def message_entries(manifest: Manifest) -> list[FileEntry]:
    return [entry for entry in manifest.files if entry.path.startswith("files/mail/")
            and entry.path.split("/")[-2] in ("cur", "new")]
