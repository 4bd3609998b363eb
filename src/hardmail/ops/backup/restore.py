"""Restoring archives: finding the archives of a chain, writing the files of a manifest out of
whichever archive of the chain holds them (each hash-checked while it is written, with its mode
and time, in 0700 directories; all on disk before it returns: one ``syncfs`` of the restore's
file system at the end instead of an fsync of each file and directory), and the full restore of
a data directory.

A full restore (:func:`restore_full`) writes into an empty or new directory only; with ``force``
the old contents are moved aside to ``<DIR>.before-restore-<time>`` (never deleted). It holds
DIR's data-directory lock (``hardmail.lock``, as ``hardmail serve`` does) for its whole run, so
it refuses a directory a server uses and no server starts on DIR meanwhile. ``files/X`` goes to
``DIR/X`` (files mode 0600 or 0700, directories 0700: the owner's bits of the manifest's mode
only), the configuration to ``DIR/hardmail.toml`` (``server.data_dir`` rewritten to DIR), TLS
files kept outside the old data directory to ``DIR/restored-external/``. The database is then
made usable at the newest schema (:mod:`hardmail.ops.backup.restore_database`). A failed restore
removes what it wrote and, with ``force``, puts the old contents back.

The target archive is read once: its members are staged inside the restore directory while the
stream is read (the manifest comes last), then moved into place once the manifest is known.
Staging stops at the stored bytes the archive's catalog record lists (else at the disk's free
space), and a member its manifest does not list is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from hardmail.delivery.durable import fsync_dir, make_private_dir
from hardmail.ops.backup import restore_config, restore_database, restore_target
from hardmail.ops.backup.archive import ArchiveError, opened_plaintext
from hardmail.ops.backup.manifest import (
    ARCHIVE_SUFFIX,
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    FileEntry,
    Manifest,
    ManifestError,
)
from hardmail.ops.backup.restore_target import RestoreError as RestoreError  # re-exported: callers import it here
from hardmail.ops.backup.tarstream import open_tar
from hardmail.ops.log import log_event
from hardmail.ops.runstate import LOCK_NAME

ProgressCallback = Callable[[str, int, int], None]  # (phase, done_bytes, total_bytes); total 0: unknown
Placement = Callable[[FileEntry], Path | None]
MAX_MANIFEST_BYTES = 1 << 30
_TOP_LEVELS = frozenset({"files", "config", "external", "database"})
_UNSAFE_PARTS = frozenset({"", ".", ".."})
EXTERNAL_DIR = "restored-external"
CONFIG_NAME = "hardmail.toml"
DATABASE_NAME = "hardmail.db"
_STAGING_PREFIX = ".hardmail-restore-"
_FREE_SPACE_MARGIN = 64 << 20  # staging without a sidecar stops this short of a full disk
_SYNC_EVERY = 64 * 1024 * 1024  # bytes written between background syncs




# --- finding archives ------------------------------------------------------------------------

def find_archive(directory: Path, name: str) -> Path | None:
    """The file of archive ``name`` in ``directory`` (``.tar.zst.age`` before ``.tar.zst``)."""
    for suffix in (ENCRYPTED_SUFFIX, ARCHIVE_SUFFIX):
        candidate = directory / (name + suffix)
        if candidate.is_file():
            return candidate
    return None


def chain_files(archive: Path, manifest: Manifest) -> dict[str, Path]:
    """name → file of every archive of ``manifest``'s chain (the archive itself included), from
    the archive's directory; RestoreError naming the first one that is missing."""
    found = {manifest.name: archive}
    for name in manifest.chain[:-1]:
        path = find_archive(archive.parent, name)
        if path is None:
            raise RestoreError(f"archive {name} of the chain of {manifest.name} is missing from {archive.parent} "
                               f"(expected {name}{ARCHIVE_SUFFIX} or {name}{ENCRYPTED_SUFFIX})")
        found[name] = path
    return found


def check_member_name(name: str) -> PurePosixPath:
    """A member or manifest path as a relative path under one of the archive's top-level
    directories; RestoreError for anything that could reach outside the restore directory."""
    return PurePosixPath(*member_parts(name))


def member_parts(name: str) -> list[str]:
    """The parts of a safe member or manifest path (see :func:`check_member_name`), checked on
    the string (a PurePosixPath for each of 10,000 entries cost a tenth of a restore)."""
    parts = name.split("/")
    if len(parts) < 2 or parts[0] not in _TOP_LEVELS or "\x00" in name or not _UNSAFE_PARTS.isdisjoint(parts):
        raise RestoreError(f"the archive names an unsafe path {name[:200]!r}; it was not written by hardmail "
                           "or is damaged")
    return parts


def check_database_names(manifest: Manifest) -> None:
    """The manifest's database members are safe paths under ``database/`` (RestoreError)."""
    for name in (manifest.database.member, manifest.database.dump_member):
        if name is not None and check_member_name(name).parts[0] != "database":
            raise RestoreError(f"the archive names its database at {name[:200]!r}, outside database/; it was not "
                               "written by hardmail or is damaged")


def restored_mode(mode: int) -> int:
    """The mode a restored file gets: the owner's bits of the manifest's (at least read and
    write), never setuid/setgid/sticky nor any group or other bit (a data directory is the
    server's alone)."""
    return (mode & 0o700) | 0o600


def read_manifest(data: bytes, archive: Path) -> Manifest:
    try:
        return Manifest.from_json(data)
    except ManifestError as exc:
        raise RestoreError(f"{archive.name}: {exc}") from None


# --- writing files ---------------------------------------------------------------------------

@dataclass(slots=True)
class _Staged:
    path: str
    size: int
    sha256: str
    mode: int  # as the member's header gives it (set on the staged file)


@dataclass
class _Writer:
    """Writes files and counts them. Durability comes at the end, once for all (:meth:`sync`):
    an fsync of each of 10,000 files and of its directory took most of a restore's time."""

    progress: ProgressCallback | None
    disk: FileSystemSync
    phase: str = "restore"
    done: int = 0
    total: int = 0
    files: int = 0
    written: int = 0
    unsynced: int = 0  # bytes written since the last background sync began
    directories: set[Path] = field(default_factory=set)  # made (or found) by this restore

    def on_bytes(self, count: int) -> None:
        self.done += count
        self.unsynced += count
        if self.unsynced >= _SYNC_EVERY:
            self.unsynced = 0
            self.disk.start()
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)

    def directory(self, path: Path) -> None:
        """``path`` and its missing parents, mode 0700 (a set of those known: no stat per file)."""
        if path in self.directories:
            return
        missing = []
        while path not in self.directories and not path.is_dir():
            missing.append(path)
            path = path.parent
        self.directories.add(path)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)  # mkdir's mode is reduced by the umask
            self.directories.add(directory)

    def stage(self, chunks: Iterable[memoryview | bytes], target: str | Path, mode: int = 0o600) -> _Staged:
        """Write ``chunks`` into the new file ``target`` (mode ``mode``), hashing them."""
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in chunks:
                digest.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
            if mode != 0o600:
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.on_bytes(size)
        return _Staged(str(target), size, digest.hexdigest(), mode)

    def write(self, chunks: Iterable[memoryview | bytes], entry: FileEntry, target: Path) -> None:
        """``chunks`` into ``target`` (new), checked against ``entry``, with its mode and time."""
        self.directory(target.parent)
        try:
            staged = self.stage(chunks, target, entry.mode & 0o7777)
            check_bytes(entry, staged.size, staged.sha256)
            self.settle(target, entry, staged.mode)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()
            raise

    def place(self, staged: _Staged, entry: FileEntry, target: Path, copy: bool) -> None:
        """Move (or, for a member that serves several entries, copy) a staged file into place."""
        check_bytes(entry, staged.size, staged.sha256)
        self.directory(target.parent)
        if copy:
            shutil.copyfile(staged.path, target)
            self.settle(target, entry, None)
        else:
            os.rename(staged.path, target)
            self.settle(target, entry, staged.mode)

    def settle(self, target: Path, entry: FileEntry, mode: int | None) -> None:
        """The entry's mode as restored (unless the file has it already) and time."""
        wanted = restored_mode(entry.mode)
        if mode != wanted:
            os.chmod(target, wanted)
        os.utime(target, ns=(entry.mtime_ns, entry.mtime_ns))
        self.files += 1
        self.written += entry.size

    def sync(self) -> None:
        """Everything written, on disk (:meth:`FileSystemSync.finish`)."""
        self.disk.finish()


def _write_all(fd: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FileSystemSync:
    """syncfs(2) of the file system holding ``root`` (Linux; elsewhere sync(2)): it writes back
    every file and directory written there, as an fsync of each would, in one pass. Through one
    descriptor opened before the restore writes anything, so that a write-back error of what it
    wrote is reported to it. :meth:`start` begins a sync in a thread (the disk then writes while
    the restore goes on decompressing, instead of all at the end); :meth:`finish` makes the last
    one and raises any write-back error either reported."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._fd = os.open(root, os.O_RDONLY | os.O_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._background, name="hardmail-restore-sync", daemon=True)
            self._thread.start()

    def _background(self) -> None:
        try:
            syncfs(self._fd, self._root)
        except OSError as exc:
            self._error = exc

    def finish(self) -> None:
        self._wait()
        syncfs(self._fd, self._root)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._wait()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()


def syncfs(fd: int, shown: Path) -> None:
    """syncfs(2) of the file system of ``fd`` (sync(2) where there is none): returns once its
    dirty data and metadata are on disk; raises the write-back error it reports."""
    if _SYNCFS is None:
        os.sync()
    elif _SYNCFS(fd) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), str(shown))


def _find_syncfs() -> Callable[[int], int] | None:
    with contextlib.suppress(OSError):
        return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)  # type: ignore[no-any-return]
    return None


_SYNCFS = _find_syncfs()


def check_bytes(entry: FileEntry, size: int, sha256: str) -> None:
    if size != entry.size:
        raise RestoreError(f"{entry.path}: {size} bytes in archive {entry.archive}, the manifest says {entry.size}; "
                           "the archive is damaged (`hardmail backup verify` lists every problem)")
    if sha256 != entry.sha256:
        raise RestoreError(f"{entry.path}: SHA-256 differs from the manifest; archive {entry.archive} is damaged "
                           "(`hardmail backup verify` lists every problem)")


# --- extracting a chain ----------------------------------------------------------------------

def extract_chain(archive: Path, into: Path, identities: Sequence[Path] = (),
                  select: Callable[[FileEntry], bool] = lambda entry: True,
                  progress: ProgressCallback | None = None, *, place: Placement | None = None,
                  on_manifest: Callable[[Manifest, Callable[[str], Path | None]], None] | None = None,
                  manifest: Manifest | None = None) -> Manifest:
    """Write every selected manifest entry (``files/``, ``config/``, ``external/`` and the
    database members) to ``into/<entry.path>`` (or where ``place`` says; None skips it), from
    whichever archive of the chain holds it, hash-checked. ``on_manifest`` may refuse the
    archive (raise) once its manifest is read, before any file is placed; it is given where a
    member was staged (None when not staged). ``manifest``: the
    archive's manifest when the caller has read it already (:func:`read_archive_manifest`);
    then only the members selected are read, not staged. Raises RestoreError."""
    into = into.absolute()
    make_private_dir(into)
    where: Placement = place or (lambda entry: into / entry.path)  # a path _wanted checked
    writer = _Writer(progress, FileSystemSync(into), phase=f"reading {archive.name}",
                     total=stored_bytes_hint(archive))
    staging = into / f"{_STAGING_PREFIX}{secrets.token_hex(6)}"
    staging.mkdir(mode=0o700)
    try:
        staged = None
        if manifest is None:
            manifest, staged = _stage_archive(archive, identities, staging, writer)
            _refuse_unlisted(manifest, staged)
        if on_manifest is not None:
            found = staged or {}
            on_manifest(manifest, lambda name: Path(found[name].path) if name in found else None)
        wanted = _wanted(manifest, select, where)
        _refuse_foreign(manifest, wanted)
        writer.total = sum(entry.size for entry, _ in wanted)
        writer.done = 0
        if staged is not None:
            writer.done = sum(entry.size for entry, _ in wanted if entry.archive == manifest.name)
            _place_staged(manifest, wanted, staged, writer)
        files = chain_files(archive, manifest)
        for name in manifest.chain:
            held = [(entry, target) for entry, target in wanted if entry.archive == name]
            if held and not (staged is not None and name == manifest.name):
                writer.phase = f"reading {files[name].name}"
                _extract_from(files[name], identities, held, writer)
        writer.sync()
    except ArchiveError as exc:
        raise RestoreError(str(exc)) from None
    finally:
        writer.disk.close()
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_archive_manifest(archive: Path, identities: Sequence[Path] = ()) -> Manifest:
    """The manifest of ``archive`` (read through to its last member). Raises RestoreError."""
    found: bytes | None = None
    try:
        with opened_plaintext(archive, identities) as plain, open_tar(plain, archive.name) as tar:
            for member in tar.members():
                if member.name == MANIFEST_MEMBER and member.regular and member.size <= MAX_MANIFEST_BYTES:
                    found = tar.read_all()
    except ArchiveError as exc:
        raise RestoreError(str(exc)) from None
    if found is None:
        raise RestoreError(f"{archive.name} has no {MANIFEST_MEMBER}: the archive is truncated")
    return read_manifest(found, archive)


def _wanted(manifest: Manifest, select: Callable[[FileEntry], bool], where: Placement) -> list[tuple[FileEntry, Path]]:
    wanted, seen = [], set()
    for entry in manifest.files:
        member_parts(entry.path)
        if entry.member != entry.path:
            member_parts(entry.member)
        if entry.path in seen:
            raise RestoreError(f"the manifest of {manifest.name} lists {entry.path} twice; the archive is damaged")
        seen.add(entry.path)
        if select(entry) and (target := where(entry)) is not None:
            wanted.append((entry, target))
    _refuse_nested(manifest, seen)
    return wanted


def _refuse_nested(manifest: Manifest, paths: set[str]) -> None:
    """No entry's path is a directory of another entry (``files/a`` and ``files/a/b``)."""
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) in paths:
                raise RestoreError(f"the manifest of {manifest.name} lists {path} inside {parent}, which it also lists "
                                   "as a file; the archive is damaged or was not written by hardmail")


def _stage_archive(archive: Path, identities: Sequence[Path], staging: Path,
                   writer: _Writer) -> tuple[Manifest, dict[str, _Staged]]:
    """Read the whole archive once: every member into ``staging``, then the manifest. What is
    staged is bounded (:func:`_staging_limit`) before each member's bytes are written."""
    staged: dict[str, _Staged] = {}
    manifest_data: bytes | None = None
    limit, within = _staging_limit(archive, staging), 0
    with opened_plaintext(archive, identities) as plain, open_tar(plain, archive.name) as tar:
        for member in tar.members():
            if not member.regular:
                continue
            if manifest_data is not None:
                raise RestoreError(f"{archive.name}: member {member.name[:200]!r} after {MANIFEST_MEMBER}; the "
                                   "archive was not written by hardmail")
            if member.name == MANIFEST_MEMBER:
                manifest_data = tar.read_all() if member.size <= MAX_MANIFEST_BYTES else b""
                continue
            within += member.size
            if within > limit:  # before its bytes are written
                raise RestoreError(f"{archive.name}: member {member.name[:200]!r} ({member.size} bytes) takes the "
                                   f"archive past {_limit_reason(archive, limit)}; the archive is damaged or was not "
                                   "written by hardmail")
            member_parts(member.name)
            if member.name in staged:
                raise RestoreError(f"{archive.name}: member {member.name} appears twice; the archive is damaged")
            staged[member.name] = writer.stage(tar.chunks(), f"{staging}/{len(staged)}", restored_mode(member.mode))
    if manifest_data is None:
        raise RestoreError(f"{archive.name} has no {MANIFEST_MEMBER}: the archive is truncated (an interrupted "
                           "copy or backup?)")
    return read_manifest(manifest_data, archive), staged


def _staging_limit(archive: Path, staging: Path) -> int:
    """The most bytes staging may write: the stored bytes the archive's sidecar records (what
    its manifest stores in it), else the free space of the restore directory's disk."""
    recorded = stored_bytes_hint(archive)
    if recorded > 0:
        return recorded
    found = os.statvfs(staging)
    return max(0, found.f_bavail * found.f_frsize - _FREE_SPACE_MARGIN)


def _limit_reason(archive: Path, limit: int) -> str:
    if stored_bytes_hint(archive) > 0:
        return f"the {limit} stored bytes its catalog record lists"
    return "the free space of the disk it is restored to"


def _refuse_unlisted(manifest: Manifest, staged: dict[str, _Staged]) -> None:
    """Every member of the archive is one its own manifest stores there."""
    listed = {str(check_member_name(entry.member)) for entry in manifest.stored_here()}
    for name in staged:
        if name not in listed:
            raise RestoreError(f"member {name[:200]} is in archive {manifest.name} but not in its manifest; the "
                               "archive is damaged or was not written by hardmail")


def _place_staged(manifest: Manifest, wanted: list[tuple[FileEntry, Path]], staged: dict[str, _Staged],
                  writer: _Writer) -> None:
    held = [(entry, target) for entry, target in wanted if entry.archive == manifest.name]
    uses: dict[str, int] = {}
    for entry, _ in held:
        uses[entry.member] = uses.get(entry.member, 0) + 1
    for entry, target in held:
        found = staged.get(entry.member)
        if found is None:
            raise RestoreError(f"{entry.path}: missing from archive {manifest.name}; the archive is damaged")
        uses[entry.member] -= 1
        writer.place(found, entry, target, copy=uses[entry.member] > 0)


def _extract_from(archive: Path, identities: Sequence[Path], held: list[tuple[FileEntry, Path]],
                  writer: _Writer) -> None:
    """Write the entries ``held`` by ``archive`` (an earlier archive of the chain)."""
    by_member: dict[str, list[tuple[FileEntry, Path]]] = {}
    for entry, target in held:
        by_member.setdefault(entry.member, []).append((entry, target))
    with opened_plaintext(archive, identities) as plain, open_tar(plain, archive.name) as tar:
        for member in tar.members():
            targets = by_member.pop(member.name, None) if member.regular else None
            if not targets:
                continue
            first_entry, first_target = targets[0]
            if member.size != first_entry.size:  # before its bytes are written
                check_bytes(first_entry, member.size, first_entry.sha256)
            writer.write(tar.chunks(), first_entry, first_target)
            for entry, target in targets[1:]:
                writer.directory(target.parent)
                shutil.copyfile(first_target, target)
                writer.settle(target, entry, None)
    if by_member:
        entry = next(iter(by_member.values()))[0][0]
        raise RestoreError(f"{entry.path}: missing from archive {entry.archive} (member {entry.member}); "
                           "that archive is damaged or is not the one the manifest names")


def _refuse_foreign(manifest: Manifest, wanted: list[tuple[FileEntry, Path]]) -> None:
    chain = set(manifest.chain) | {manifest.name}
    for entry, _ in wanted:
        if entry.archive not in chain:
            raise RestoreError(f"{entry.path}: held by archive {entry.archive}, which is not in the chain of "
                               f"{manifest.name}; the manifest is damaged")


def stored_bytes_hint(archive: Path) -> int:
    """The archive's stored bytes from its sidecar, for the progress bar (0 when unknown)."""
    import json

    name = archive.name
    for suffix in (ENCRYPTED_SUFFIX, ARCHIVE_SUFFIX):
        name = name.removesuffix(suffix)
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        value = json.loads((archive.parent / f"{name}.json").read_bytes()).get("stored_bytes", 0)
        return int(value) if isinstance(value, int) and value > 0 else 0
    return 0


# --- the full restore ------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreReport:
    archive: str
    into: Path
    files: int
    bytes: int
    messages: int
    database: str  # "SQLite DIR/hardmail.db" or the PostgreSQL URL without its password
    schema_from: str | None
    schema_to: str | None
    config_file: Path | None
    external_dir: Path | None
    moved_aside: Path | None
    seconds: float
    notes: tuple[str, ...] = ()

    def start_command(self) -> str:
        config = f" --config {self.config_file}" if self.config_file is not None else ""
        return f"hardmail serve{config} --data-dir {self.into}"


async def restore_full(archive: Path, into: Path, identities: Sequence[Path] = (), force: bool = False,
                       database_url: str | None = None, progress: ProgressCallback | None = None) -> RestoreReport:
    """Restore the whole state of ``archive`` (following its chain) into the data directory
    ``into`` (see the module docstring). Raises RestoreError."""
    started = time.monotonic()
    into = into.absolute()
    if archive.resolve().is_relative_to(into.resolve()):
        raise RestoreError(f"the archive {archive} is inside {into}; restore into another directory")
    lock, moved_aside = await asyncio.to_thread(restore_target.prepare_target, into, force, archive.name)
    try:
        report = await _restore(archive, into, identities, database_url, progress, moved_aside)
    except BaseException as exc:
        put_back = await asyncio.to_thread(restore_target.undo, into, moved_aside)
        if isinstance(exc, RestoreError | restore_database.DatabaseRestoreError):
            raise RestoreError(f"{exc}{put_back}") from None
        raise
    finally:
        lock.release()
    seconds = time.monotonic() - started
    log_event("backup.restored", archive=report.archive, files=report.files, messages=report.messages,
              schema_from=report.schema_from, schema_to=report.schema_to, seconds=round(seconds, 3))
    return RestoreReport(**{**report.__dict__, "seconds": seconds})


async def _restore(archive: Path, into: Path, identities: Sequence[Path], database_url: str | None,
                   progress: ProgressCallback | None, moved_aside: Path | None) -> RestoreReport:
    database_dir = into / f"{_STAGING_PREFIX}database"
    plan = _Plan(into, database_dir, database_url)
    manifest = await asyncio.to_thread(extract_chain, archive, into, identities, progress=progress,
                                       place=plan.place, on_manifest=plan.prepare)
    database = await restore_database.restore(manifest, database_dir, into / DATABASE_NAME, database_url, progress)
    await asyncio.to_thread(shutil.rmtree, database_dir, True)
    notes = list(database.notes)
    config_file = into / CONFIG_NAME if plan.config is not None else None
    if config_file is not None:
        notes += await asyncio.to_thread(restore_config.rewrite, config_file, into, database.url, manifest.data_dir)
    if plan.external:
        notes.append(f"TLS files that were configured outside the data directory are in {into / EXTERNAL_DIR}; "
                     "copy them to where tls.cert_file and tls.key_file name them, or change those settings")
    await asyncio.to_thread(fsync_dir, into)
    return RestoreReport(
        archive=manifest.name, into=into, files=plan.placed, bytes=sum(e.size for e in manifest.files),
        messages=sum(1 for e in manifest.files if is_message_path(e.path)), database=database.shown,
        schema_from=database.schema_from, schema_to=database.schema_to, config_file=config_file,
        external_dir=into / EXTERNAL_DIR if plan.external else None, moved_aside=moved_aside, seconds=0.0,
        notes=tuple(notes))


@dataclass
class _Plan:
    """Where each entry of a full restore goes."""

    into: Path
    database_dir: Path
    database_url: str | None
    config: FileEntry | None = None
    config_in_files: str | None = None  # files/hardmail.toml, when the configuration is also config/...
    external: bool = False
    placed: int = 0

    def prepare(self, manifest: Manifest, member_file: Callable[[str], Path | None]) -> None:
        """Once the manifest is known, before any entry is placed."""
        check_database_names(manifest)
        restore_database.check_restorable(manifest, self.database_url, member_file)
        if any(entry.path.startswith("config/") for entry in manifest.files):
            self.config_in_files = f"files/{CONFIG_NAME}"

    def place(self, entry: FileEntry) -> Path | None:
        top, _, rest = entry.path.partition("/")  # a path extract_chain has checked
        if top == "database":
            return self.database_dir / rest
        if entry.path == self.config_in_files:
            return None  # the configuration of config/ takes its place (and is rewritten)
        if entry.path == f"files/{LOCK_NAME}":
            return None  # the lock this restore holds; never an archived file
        self.placed += 1
        if top == "files":
            return self.into / rest
        if top == "external":
            self.external = True
            return self.into / EXTERNAL_DIR / rest
        if self.config is not None:  # one configuration file per archive; another is kept aside
            return self.into / EXTERNAL_DIR / "config" / rest
        self.config = entry
        return self.into / CONFIG_NAME


def is_message_path(path: str) -> bool:
    """A Maildir message file: ``files/mail/<domain>/<local>/[.Folder/](cur|new)/<name>``."""
    parts = path.split("/")
    if len(parts) not in (6, 7) or parts[:2] != ["files", "mail"] or parts[-1].startswith("."):
        return False
    return parts[-2] in ("cur", "new") and (len(parts) == 6 or parts[4].startswith("."))
