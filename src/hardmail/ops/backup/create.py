"""Making a backup (full or incremental) of a running server: ``create_backup``.

Steps, each finished before the next (spec "Consistency while the server runs"):

1. Under an exclusive lock of the destination (``.hardmail-backup.lock``; leftovers of a crashed
   run are removed first), the database is snapshotted (:mod:`.snapshot`, :mod:`.snapshot_pg`)
   and its mailbox index and queue are read once.
2. The files of the data directory (:mod:`.sources`, :mod:`.file_phase`) are written into
   ``<name>.tar.zst`` in the destination, each read once (hashed, compressed and counted in the
   same pass): message files the index knows, and those on disk before the snapshot began that
   it does not know (adopted); a file delivered after the snapshot is skipped (the next backup
   has it). An incremental backup takes over, without reading them, the files whose identity is
   in the parent's manifest. A message whose file was renamed while the directory was listed is
   looked for once more.
3. The database copy is corrected to agree with the files written, and stored; then the
   configuration file, the TLS files kept outside the data directory, and ``MANIFEST.json`` last.
4. The plaintext archive is verified (``hardmail.ops.backup.verify.verify_created``, when
   installed): read back from the file while it is written (on a second core), its chain taken
   as recorded; meanwhile it is fsync'd. Then, with recipients, it is encrypted to
   ``<name>.tar.zst.age`` and the plaintext removed.
5. The sidecar ``<name>.json`` and the manifest copy in ``<data_dir>/backup-state/manifests`` are
   written, the health state is recorded and ``backup.created`` (or ``backup.failed``) logged.

Everything blocking runs in a thread (``asyncio.to_thread``); memory grows with the number of
files (one small record each), never with their size.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

import hardmail
from hardmail.config.schema import Config
from hardmail.core.bulk import bulk_allocation
from hardmail.core.diskfull import is_disk_full
from hardmail.delivery.durable import fsync_dir, make_private_dir, remove_quietly
from hardmail.mailbox.files import DIRTY_NS
from hardmail.ops.backup import health
from hardmail.ops.backup.archive import ArchiveError, encrypt_file, parse_recipients, sha256_file
from hardmail.ops.backup.catalog import (
    ArchiveRecord,
    BackupError,
    Parent,
    VerifyStatus,
    locked_destination,
    make_destination,
    newest_parent,
    save_manifest_copy,
    sidecar_path,
    work_dir,
    write_record,
)
from hardmail.ops.backup.file_phase import FilePhase, Progress, ProgressCallback, Taking, sqlite_path
from hardmail.ops.backup.manifest import (
    ARCHIVE_SUFFIX,
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    DatabaseInfo,
    FileEntry,
    Kind,
    Manifest,
    archive_name,
    name_of_archive_file,
    utc_now,
)
from hardmail.ops.backup.snapshot import (
    IndexView,
    SqliteSnapshot,
    compute_corrections,
)
from hardmail.ops.backup.snapshot_pg import PostgresSnapshot
from hardmail.ops.backup.tarstream import FastArchiveWriter, Written
from hardmail.ops.log import log_event

__all__ = ["BackupError", "BackupRequest", "BackupResult", "ProgressCallback", "create_backup"]



@dataclass(frozen=True)
class BackupRequest:
    destination: Path
    incremental: bool = False  # True: parent = newest archive of the destination's catalog (full if none)
    recipients: tuple[str, ...] = ()  # age recipients (age1...) or files of them
    verify: bool = True  # verify the new archive before returning
    reason: str = "manual"  # manual | scheduled | pre-upgrade (logged)
    config_file: Path | None = None  # the configuration file in use, stored under config/


@dataclass(frozen=True, repr=False)
class BackupResult:
    record: ArchiveRecord
    archive_path: Path
    manifest: Manifest
    seconds: float
    verify_skipped: str = ""  # why verification (asked for) was not made; record.verify is then None

    def __repr__(self) -> str:
        """Short: Python 3.11's ``asyncio.run`` formats the repr of the main task's result (through
        ``signal.getsignal``), and that of the manifest, one entry per file, took 60 ms."""
        return f"BackupResult({self.record.name!r}, {len(self.manifest.files)} files, {self.seconds:.3f} s)"


async def create_backup(config: Config, request: BackupRequest,
                        progress: ProgressCallback | None = None) -> BackupResult:
    """Make one archive in ``request.destination``; raises BackupError (one line) when none was made.
    An archive whose verification failed is kept and returned (``record.verify.ok`` is False)."""
    started = time.monotonic()
    data_dir = Path(config.data_dir)
    full = not request.incremental
    try:
        result = await _Job(config, request, progress or _no_progress, started).run()
    except BackupError as exc:
        await asyncio.to_thread(_record_failure, data_dir, request, str(exc), full)
        raise
    except (OSError, ArchiveError) as exc:
        error = _describe_error(exc, request.destination)
        await asyncio.to_thread(_record_failure, data_dir, request, error, full)
        raise BackupError(error, _error_hint(exc, request.destination)) from None
    await asyncio.to_thread(_record_success, data_dir, request, result)
    return result


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


@dataclass
class _Plan:
    """What the archive will be: its name, kind, parent and where it is written."""

    name: str
    kind: Kind
    at: datetime
    parent: Parent | None
    destination: Path
    notes: Counter[str] = field(default_factory=Counter)
    manifest_json: bytes = b""
    written: Written | None = None  # what the archive writer wrote (set when it is closed)
    read_back: Any = None  # verify.ReadBack of the archive while it is written, when it is to be verified
    verify_skipped: str = ""  # why a verification that was asked for was not made
    encrypted: bool = False

    @property
    def chain(self) -> tuple[str, ...]:
        return (*(self.parent.manifest.chain if self.parent else ()), self.name)

    @property
    def plain_path(self) -> Path:
        """The plaintext archive; for an encrypted one inside the work directory (removed with it,
        never taken for an archive of the destination)."""
        return (self.work_dir if self.encrypted else self.destination) / f"{self.name}{ARCHIVE_SUFFIX}"

    @property
    def encrypted_path(self) -> Path:
        return self.destination / f"{self.name}{ENCRYPTED_SUFFIX}"

    @property
    def work_dir(self) -> Path:
        return work_dir(self.destination, self.name)


class _Job:
    def __init__(self, config: Config, request: BackupRequest, callback: ProgressCallback, started: float) -> None:
        self.config = config
        self.request = request
        self.data_dir = Path(config.data_dir).resolve()
        self.destination = Path(request.destination).expanduser().resolve()
        self.progress = Progress(callback)
        self.started = started
        self.recipients = _checked_recipients(request.recipients)

    async def run(self) -> BackupResult:
        if not self.data_dir.is_dir():
            raise BackupError(f"there is no data directory at {self.data_dir}",
                              "pass --data-dir or set server.data_dir to the server's data directory")
        if self.destination == self.data_dir:
            raise BackupError("the backup destination cannot be the data directory itself",
                              "name a directory of its own (the default is <data_dir>/backups)")
        make_destination(self.destination)
        with locked_destination(self.destination):
            plan = await asyncio.to_thread(self._plan)  # reads the parent's manifest: off the event loop
            make_private_dir(plan.work_dir)
            try:
                manifest, writer = await self._write_archive(plan)
                verify = await self._sync_and_verify(plan, manifest, writer)
                final = await self._encrypt(plan)
                record = await asyncio.to_thread(self._record, plan, manifest, final, verify)
            except BaseException:
                _remove_outputs(plan)
                raise
            finally:
                if plan.read_back is not None:  # its writer has finished or was abandoned: it ends
                    await asyncio.to_thread(plan.read_back.close)
                shutil.rmtree(plan.work_dir, ignore_errors=True)
        return BackupResult(record, final, manifest, time.monotonic() - self.started, plan.verify_skipped)

    def _plan(self) -> _Plan:
        at = utc_now()
        with bulk_allocation():  # the parent's manifest: one object per file
            parent = newest_parent(self.destination, self.data_dir) if self.request.incremental else None
        kind: Kind = "incremental" if parent is not None else "full"
        plan = _Plan(archive_name(kind, at), kind, at, parent, self.destination, encrypted=bool(self.recipients))
        if self.request.incremental and parent is None:
            plan.notes["incremental_without_parent"] = 1
        return plan

    # --- writing ---------------------------------------------------------------------------

    async def _write_archive(self, plan: _Plan) -> tuple[Manifest, FastArchiveWriter]:
        """The archive, finished (every byte written) but not yet synced: its fsync (the time
        its last dirty pages take to reach the disk) is made while it is read back."""
        database = _database_for(self.config, plan.work_dir)
        self.progress.start("snapshot", 0)
        adopt_before_ns = time.time_ns() - DIRTY_NS  # on disk before the snapshot began, with a margin
        await database.snapshot()
        try:
            view = await database.read_view()
            await database.start_dump()
            writer = await asyncio.to_thread(FastArchiveWriter, plan.plain_path)
            try:
                plan.read_back = self._start_read_back(plan, writer)
                taking = Taking(self.config, self.data_dir, self.request.config_file, plan.name, plan.destination,
                                plan.parent.manifest if plan.parent else None, adopt_before_ns)
                files = await asyncio.to_thread(FilePhase, taking, writer, view, self.progress)
                await asyncio.to_thread(files.run)
                corrections = await asyncio.to_thread(compute_corrections, view, files.outcome)
                entries = files.entries + await asyncio.to_thread(files.add_config_and_external)
                entries += await database.store(writer, corrections, plan.notes)
                manifest = await asyncio.to_thread(self._manifest, plan, entries, view, database.info(),
                                                   files.notes + Counter(corrections.notes()))
                plan.manifest_json = await asyncio.to_thread(_finish_writer, writer, manifest)
                plan.written = writer.written
            except BaseException:
                await asyncio.to_thread(writer.abort)
                raise
        finally:
            await database.close()
        return manifest, writer

    def _manifest(self, plan: _Plan, entries: list[FileEntry], view: IndexView, database: DatabaseInfo,
                  notes: Counter[str] | dict[str, int]) -> Manifest:
        counted = Counter(plan.notes)
        counted.update(notes)
        config_file = self.request.config_file
        return Manifest(
            name=plan.name, kind=plan.kind, parent=plan.parent.record.name if plan.parent else None,
            chain=plan.chain, created_at=plan.at.isoformat(), hardmail_version=hardmail.__version__,
            schema_revision=view.schema_revision, database=database, data_dir=str(self.data_dir),
            config_file=None if config_file is None else str(Path(config_file).resolve()),
            files=tuple(entries), notes={key: value for key, value in sorted(counted.items()) if value},
        )

    # --- verifying, encrypting, recording --------------------------------------------------

    async def _sync_and_verify(self, plan: _Plan, manifest: Manifest,
                               writer: FastArchiveWriter) -> VerifyStatus | None:
        """The archive's fsync (waiting for the disk) while its check (CPU) is made."""
        synced, verify = await asyncio.gather(asyncio.to_thread(writer.sync), self._verify(plan, manifest),
                                              return_exceptions=True)
        if isinstance(synced, BaseException):
            raise synced
        if isinstance(verify, BaseException):
            raise verify
        return verify

    async def _verify(self, plan: _Plan, manifest: Manifest) -> VerifyStatus | None:
        """Check the plaintext archive just written (``verify.verify_created``: read back whole, its
        chain taken as recorded); None (and ``plan.verify_skipped``) when it cannot be."""
        if not self.request.verify:
            return None
        verify = _verify_module()
        if verify is None:
            plan.verify_skipped = "the verification module is not installed"
            return None
        assert plan.written is not None
        self.progress.start("verify", plan.written.tar_size)
        await asyncio.to_thread(_link_chain, plan)
        try:
            report = await asyncio.to_thread(verify.verify_created, plan.plain_path, manifest, plan.manifest_json,
                                             plan.written, plan.parent.manifest if plan.parent else None,
                                             self._verify_progress, read_back=plan.read_back)
        except verify.CannotVerify as exc:
            plan.verify_skipped = str(exc)
            return None
        except (ArchiveError, BackupError, OSError) as exc:
            return VerifyStatus(False, utc_now().isoformat(), (str(exc),))
        self.progress.finish()
        return VerifyStatus(bool(report.ok), utc_now().isoformat(), tuple(str(f) for f in report.failures))

    def _start_read_back(self, plan: _Plan, writer: FastArchiveWriter) -> Any:
        """The archive read back (``verify.ReadBack``) while it is written, when it is to be
        verified: on a second core that reading costs no time of its own (it took a third of a
        full backup's time after the writing)."""
        verify = _verify_module() if self.request.verify else None
        return None if verify is None else verify.ReadBack(plan.plain_path, writer.follow())

    def _verify_progress(self, _phase: str, done: int, total: int) -> None:
        self.progress.callback("verify", done, total)

    async def _encrypt(self, plan: _Plan) -> Path:
        if not self.recipients:
            return plan.plain_path
        self.progress.start("encrypt", plan.plain_path.stat().st_size)
        await asyncio.to_thread(encrypt_file, plan.plain_path, plan.encrypted_path, self.recipients)
        await asyncio.to_thread(_remove_durably, plan.plain_path)
        self.progress.finish()
        return plan.encrypted_path

    def _record(self, plan: _Plan, manifest: Manifest, final: Path, verify: VerifyStatus | None) -> ArchiveRecord:
        stored = manifest.stored_here()
        record = ArchiveRecord(
            name=plan.name, kind=plan.kind, parent=manifest.parent, chain=manifest.chain,
            created_at=manifest.created_at, hardmail_version=manifest.hardmail_version,
            schema_revision=manifest.schema_revision, archive_file=final.name, archive_size=final.stat().st_size,
            archive_sha256=self._archive_sha256(plan, final), encrypted=bool(self.recipients),
            recipients=self.recipients,
            file_count=len(manifest.files), stored_bytes=sum(entry.size for entry in stored), verify=verify,
        )
        write_record(self.destination, record)
        save_manifest_copy(self.data_dir, manifest, plan.manifest_json)
        return record

    def _archive_sha256(self, plan: _Plan, final: Path) -> str:
        """Of the file as stored: the plaintext one was hashed as it was written (by the writer)
        or read back (by the reader that followed it); else, or once encrypted, read again."""
        if final == plan.plain_path and plan.written is not None:
            if plan.written.file_sha256:
                return plan.written.file_sha256
            found = plan.read_back.file_sha256(plan.written.file_size) if plan.read_back is not None else None
            if found:
                return str(found)
        return sha256_file(final)


def _finish_writer(writer: FastArchiveWriter, manifest: Manifest) -> bytes:
    with bulk_allocation():
        data = manifest.to_json()
    writer.add_bytes(MANIFEST_MEMBER, data, mode=0o600, mtime=time.time())
    writer.finish()
    return data


# --- helpers ---------------------------------------------------------------------------------

def _database_for(config: Config, work_dir: Path) -> SqliteSnapshot | PostgresSnapshot:
    url = config.database_url
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        return PostgresSnapshot(url, work_dir)
    path = sqlite_path(config)
    if backend != "sqlite" or path is None:
        raise BackupError(f"cannot back up a database of kind {backend!r} (storage.url)",
                          "hardmail backs up SQLite files and PostgreSQL databases")
    return SqliteSnapshot(path, work_dir)


def _link_chain(plan: _Plan) -> None:
    """Verification looks for the chain next to the archive: beside a plaintext in the work
    directory, links to the earlier archives of the destination."""
    if plan.parent is None or plan.plain_path.parent == plan.destination:
        return
    for path in plan.parent.paths:
        name = name_of_archive_file(path.name)
        record = sidecar_path(path.parent, name) if name else None
        for linked in (path, record):
            if linked is not None and linked.exists():
                with contextlib.suppress(FileExistsError):
                    (plan.work_dir / linked.name).symlink_to(linked)


def _remove_outputs(plan: _Plan) -> None:
    for path in (plan.plain_path, plan.encrypted_path, sidecar_path(plan.destination, plan.name)):
        remove_quietly(path)


def _remove_durably(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)


def _checked_recipients(values: tuple[str, ...]) -> tuple[str, ...]:
    """The recipients as ``age1...`` strings (files of them read); BackupError for a bad one."""
    if not values:
        return ()
    try:
        return tuple(str(recipient) for recipient in parse_recipients(list(values)))
    except ArchiveError as exc:
        raise BackupError(str(exc), "give age public keys (age1...) or files of them; "
                                    "`hardmail backup keygen --out FILE` makes a key pair") from None


def _verify_module() -> Any:
    """``hardmail.ops.backup.verify`` (the restore part), or None while it is not installed."""
    try:
        return importlib.import_module("hardmail.ops.backup.verify")
    except ModuleNotFoundError as exc:
        if exc.name != "hardmail.ops.backup.verify":
            raise
        return None


# --- outcome: health state and log events ----------------------------------------------------

def _record_success(data_dir: Path, request: BackupRequest, result: BackupResult) -> None:
    record = result.record
    verified = record.verify is not None and record.verify.ok
    failures = record.verify.failures if record.verify is not None else ()
    error = f"verification of {record.name} failed: {failures[0] if failures else 'unknown'}" \
        if record.verify is not None and not record.verify.ok else ""
    health.record_attempt(data_dir, ok=True, verified=verified, archive=record.name, error=error,
                    full=record.kind == "full")
    log_event("backup.created", name=record.name, kind=record.kind, files=record.file_count,
              bytes=record.archive_size, stored_bytes=record.stored_bytes, seconds=round(result.seconds, 3),
              reason=request.reason, encrypted=record.encrypted, verify=record.verify_status)
    if error:
        log_event("backup.failed", level="error", reason=request.reason, name=record.name, error=error)


def _record_failure(data_dir: Path, request: BackupRequest, error: str, full: bool) -> None:
    with contextlib.suppress(OSError):
        health.record_attempt(data_dir, ok=False, verified=False, archive=None, error=error, full=full)
    log_event("backup.failed", level="error", reason=request.reason, error=error)


def _describe_error(exc: BaseException, destination: Path) -> str:
    if is_disk_full(exc, destination):
        return f"the disk holding {destination} is full; free space and retry"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"the backup failed: {exc.strerror or exc}{where}"
    return _first_line(exc)


def _error_hint(exc: BaseException, destination: Path) -> str:
    if is_disk_full(exc, destination):
        return ""
    return "check that the data directory and the backup directory are readable and writable by this user"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
