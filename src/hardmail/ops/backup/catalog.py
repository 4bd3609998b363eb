"""The catalog of backups: one sidecar record ``<name>.json`` next to each archive of a
destination directory, the chain of archives an incremental one needs, and the data directory's
backup state (``<data_dir>/backup-state/``, mode 0700) with a copy of every manifest made from it.

A sidecar (:class:`ArchiveRecord`) says what an archive is without opening it: kind, parent and
chain, size and SHA-256 of the file as stored, whether and to whom it is encrypted, and how its
verification went. It never holds file names or addresses, since the archive itself may be
encrypted. Sidecars and manifest copies are written atomically (temporary file, fsync, rename,
fsync of the directory). The manifest copies let an incremental backup follow an encrypted one
without the private key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hardmail.delivery.durable import fsync_dir, make_private_dir, remove_quietly, write_durably
from hardmail.ops.backup.manifest import (
    ARCHIVE_SUFFIX,
    ENCRYPTED_SUFFIX,
    FORMAT,
    SIDECAR_SUFFIX,
    Manifest,
    ManifestError,
    name_of_archive_file,
)

STATE_DIR_NAME = "backup-state"
MANIFESTS_DIR_NAME = "manifests"
DEFAULT_DESTINATION_NAME = "backups"
LOCK_NAME = ".hardmail-backup.lock"
WORK_PREFIX = ".hardmail-work-"


class BackupError(Exception):
    """A backup that cannot be made, listed or followed. ``str()`` is one line for an admin (never
    a secret); ``hint`` says what to do about it, when there is something to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True, slots=True)
class VerifyStatus:
    ok: bool
    at: str  # ISO 8601 UTC
    failures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "at": self.at, "failures": list(self.failures)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> VerifyStatus:
        return cls(ok=bool(value["ok"]), at=str(value["at"]), failures=tuple(str(f) for f in value.get("failures", ())))


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """The sidecar of one archive (``<name>.json``)."""

    name: str
    kind: str  # full | incremental
    parent: str | None
    chain: tuple[str, ...]  # archive names, oldest → this one
    created_at: str
    hardmail_version: str
    schema_revision: str | None
    archive_file: str  # basename, next to the sidecar
    archive_size: int
    archive_sha256: str  # of the file as stored (encrypted or not)
    encrypted: bool
    recipients: tuple[str, ...]  # age public keys (age1...)
    file_count: int  # files of the restored state (manifest entries)
    stored_bytes: int  # bytes of files whose content is in this archive
    verify: VerifyStatus | None = None
    format: str = FORMAT

    @property
    def verify_status(self) -> str:
        """``ok``, ``failed`` or ``unverified``."""
        if self.verify is None:
            return "unverified"
        return "ok" if self.verify.ok else "failed"

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["chain"] = list(self.chain)
        value["recipients"] = list(self.recipients)
        value["verify"] = None if self.verify is None else self.verify.to_json()
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ArchiveRecord:
        if value.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} record")
        verify = value.get("verify")
        return cls(
            name=str(value["name"]), kind=str(value["kind"]), parent=value.get("parent"),
            chain=tuple(str(n) for n in value["chain"]), created_at=str(value["created_at"]),
            hardmail_version=str(value["hardmail_version"]), schema_revision=value.get("schema_revision"),
            archive_file=str(value["archive_file"]), archive_size=int(value["archive_size"]),
            archive_sha256=str(value["archive_sha256"]), encrypted=bool(value["encrypted"]),
            recipients=tuple(str(r) for r in value.get("recipients", ())), file_count=int(value["file_count"]),
            stored_bytes=int(value["stored_bytes"]),
            verify=None if verify is None else VerifyStatus.from_json(verify),
        )


# --- places ----------------------------------------------------------------------------------

def state_dir(data_dir: Path) -> Path:
    """``<data_dir>/backup-state``: manifest copies and the health state (never in a backup)."""
    return Path(data_dir) / STATE_DIR_NAME


def default_destination(data_dir: Path) -> Path:
    """``<data_dir>/backups``: where backups go when neither ``--to`` nor ``[backup] destination`` says."""
    return Path(data_dir) / DEFAULT_DESTINATION_NAME


def sidecar_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}{SIDECAR_SUFFIX}"


def manifests_dir(data_dir: Path) -> Path:
    return state_dir(data_dir) / MANIFESTS_DIR_NAME


# --- sidecars --------------------------------------------------------------------------------

def write_record(directory: Path, record: ArchiveRecord) -> None:
    """Write ``record`` as ``<directory>/<name>.json`` atomically (mode 0600)."""
    data = json.dumps(record.to_json(), indent=1, sort_keys=True).encode() + b"\n"
    write_durably(sidecar_path(directory, record.name), data, mode=0o600)


def read_record(path: Path) -> ArchiveRecord | None:
    """The record of a sidecar file, or None when it is missing or is not a record."""
    try:
        return ArchiveRecord.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_records(directory: Path) -> list[ArchiveRecord]:
    """Every archive record of ``directory``, sorted by ``created_at`` (then name); a missing
    directory has none. Files that are not records are left out."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise BackupError(f"{directory} is not a directory", "name the directory that holds the archives") from None
    except PermissionError:
        raise BackupError(f"cannot read the backup directory {directory}: permission denied",
                          "run as the user that owns it") from None
    records = []
    for file_name in sorted(names):
        if file_name.startswith("hardmail-") and file_name.endswith(SIDECAR_SUFFIX):
            record = read_record(Path(directory) / file_name)
            if record is not None and record.name == file_name[: -len(SIDECAR_SUFFIX)]:
                records.append(record)
    records.sort(key=lambda r: (r.created_at, r.name))
    return records


@dataclass(frozen=True, slots=True)
class ListedArchive:
    """One row of ``hardmail backup list``: an archive file or a record (or both) and its status:
    ``ok``, ``failed``, ``unverified`` (as recorded), ``missing`` (a record without its archive),
    ``no record`` (an archive without a readable sidecar), ``damaged (size)`` (the file's size is
    not the recorded one) or ``chain broken: NAME missing``."""

    name: str
    archive_file: str | None
    size: int | None  # of the file as it is now
    record: ArchiveRecord | None
    status: str

    @property
    def kind(self) -> str:
        if self.record is not None:
            return self.record.kind
        return "incremental" if self.name.endswith("-incr") else "full" if self.name.endswith("-full") else "?"

    def to_json(self) -> dict[str, Any]:
        recorded = self.record.to_json() if self.record is not None else {
            "name": self.name, "kind": self.kind, "archive_file": self.archive_file, "archive_size": self.size,
            "encrypted": bool(self.archive_file and self.archive_file.endswith(ENCRYPTED_SUFFIX))}
        return {**recorded, "status": self.status, "size": self.size, "present": self.size is not None}


def list_directory(directory: Path) -> list[ListedArchive]:
    """Every archive and record of ``directory``, oldest first, each with its status (see
    :class:`ListedArchive`); archives being written (their work directory is there) are left
    out. BackupError when the directory cannot be read."""
    try:
        names = set(os.listdir(directory))
    except FileNotFoundError:
        raise BackupError(f"there is no backup directory {directory}",
                          "pass --dir with the directory that holds the archives (`backup create --to`)") from None
    except NotADirectoryError:
        raise BackupError(f"{directory} is not a directory", "name the directory that holds the archives") from None
    except PermissionError:
        raise BackupError(f"cannot read the backup directory {directory}: permission denied",
                          "run as the user that owns it") from None
    files: dict[str, str] = {}
    for file_name in sorted(names):
        archive = name_of_archive_file(file_name)
        if archive is not None:
            files[archive] = file_name
    records = {r.name: r for r in read_records(directory)}
    listed = []
    for name in sorted(set(files) | set(records)):
        if f"{WORK_PREFIX}{name}" in names:
            continue  # being written (or left by a crash: the next backup removes it)
        listed.append(_listed(Path(directory), name, files, records.get(name)))
    return listed


def _listed(directory: Path, name: str, files: dict[str, str], record: ArchiveRecord | None) -> ListedArchive:
    file_name = record.archive_file if record is not None and record.archive_file in files.values() else files.get(name)
    size = _size_of(directory / file_name) if file_name is not None else None
    if record is None:
        return ListedArchive(name, file_name, size, None, "no record")
    if size is None:
        return ListedArchive(name, None, None, record, "missing")
    if size != record.archive_size:
        return ListedArchive(name, file_name, size, record, "damaged (size)")
    absent = next((member for member in record.chain[:-1] if member not in files), None)
    if absent is not None:
        return ListedArchive(name, file_name, size, record, f"chain broken: {absent} missing")
    return ListedArchive(name, file_name, size, record, record.verify_status)


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def record_for(archive: Path) -> ArchiveRecord | None:
    """The sidecar record of ``archive`` (``<name>.tar.zst[.age]``), None when it has none."""
    name = name_of_archive_file(Path(archive).name)
    if name is None:
        return None
    return read_record(sidecar_path(Path(archive).parent, name))


def archive_path(directory: Path, name: str) -> Path | None:
    """The archive file of ``name`` in ``directory`` (as its sidecar names it, else whichever of
    ``.tar.zst.age`` / ``.tar.zst`` exists), or None."""
    record = read_record(sidecar_path(directory, name))
    candidates = [record.archive_file] if record is not None else []
    candidates += [name + ENCRYPTED_SUFFIX, name + ARCHIVE_SUFFIX]
    for candidate in candidates:
        path = Path(directory) / candidate
        if path.is_file():
            return path
    return None


def chain_paths(archive: Path) -> list[Path]:
    """The archives ``archive`` restores from, oldest → itself, found next to it by the chain its
    sidecar records. Raises BackupError when one is missing (or ``archive`` has no sidecar and is
    not a full backup)."""
    archive = Path(archive)
    name = name_of_archive_file(archive.name)
    if name is None:
        raise BackupError(f"{archive.name} is not a hardmail backup archive (hardmail-...tar.zst[.age])")
    record = record_for(archive)
    if record is None:
        if name.endswith("-full"):
            return [archive]
        raise BackupError(f"the incremental archive {archive.name} has no record {name}{SIDECAR_SUFFIX} next to it, "
                          "so its chain is unknown", "copy the .json files together with the archives")
    paths = []
    for member in record.chain[:-1]:
        found = archive_path(archive.parent, member)
        if found is None:
            raise BackupError(f"the archive {member} of the chain of {name} is missing from {archive.parent}",
                              "copy every archive of the chain (see `hardmail backup list`) into one directory")
        paths.append(found)
    return [*paths, archive]


# --- manifest copies in the state directory --------------------------------------------------

def ensure_state_dir(data_dir: Path) -> Path:
    """The state directory and its manifests directory, created 0700 when missing."""
    directory = manifests_dir(data_dir)
    make_private_dir(directory)
    return state_dir(data_dir)


def save_manifest_copy(data_dir: Path, manifest: Manifest, data: bytes = b"") -> Path:
    """Keep a copy of ``manifest`` (``data``: its JSON, when already made) in the state directory."""
    ensure_state_dir(data_dir)
    path = manifests_dir(data_dir) / f"{manifest.name}.json"
    write_durably(path, data or manifest.to_json(), mode=0o600)
    return path


def load_manifest_copy(data_dir: Path, name: str) -> Manifest | None:
    """The manifest copy of archive ``name``, or None when there is none (or it is damaged)."""
    try:
        return Manifest.from_json((manifests_dir(data_dir) / f"{name}.json").read_bytes())
    except (FileNotFoundError, ManifestError):
        return None


@dataclass(frozen=True)
class Parent:
    """The archive an incremental backup builds on."""

    record: ArchiveRecord
    manifest: Manifest
    paths: list[Path] = field(default_factory=list)


def newest_parent(destination: Path, data_dir: Path) -> Parent | None:
    """The newest archive of ``destination`` that an incremental backup of ``data_dir`` can follow:
    its manifest copy is in the state directory, it was made from this data directory, its
    verification did not fail and every archive of its chain is there. None when there is none
    (the backup is then a full one)."""
    for record in reversed(read_records(destination)):
        if record.verify is not None and not record.verify.ok:
            continue  # its files may be damaged: never build on it
        manifest = load_manifest_copy(data_dir, record.name)
        if manifest is None or Path(manifest.data_dir) != Path(data_dir):
            continue
        try:
            paths = chain_paths(Path(destination) / record.archive_file)
        except BackupError:
            continue
        if not paths[-1].is_file():
            continue
        return Parent(record, manifest, paths)
    return None


# --- the destination directory ---------------------------------------------------------------

def make_destination(destination: Path) -> None:
    """The destination directory, created 0700 when missing; BackupError when it cannot be used."""
    if destination.exists() and not destination.is_dir():
        raise BackupError(f"the backup destination {destination} is not a directory", "pass --to with a directory")
    try:
        make_private_dir(destination)
    except PermissionError:
        raise BackupError(f"cannot create the backup directory {destination}: permission denied",
                          "create it for the server's user, or pass --to with a writable directory") from None
    except (FileExistsError, NotADirectoryError):
        raise BackupError(f"the backup destination {destination} is not a directory",
                          "pass --to with a directory") from None
    if not os.access(destination, os.W_OK | os.X_OK):
        raise BackupError(f"the backup directory {destination} is not writable by this user",
                          "run as the user that owns it, or pass --to with a writable directory")


@contextlib.contextmanager
def locked_destination(destination: Path) -> Iterator[None]:
    """One backup at a time per destination (an ``flock`` on ``.hardmail-backup.lock``, released
    by the kernel if the process dies); leftovers of a run that crashed are removed first."""
    fd = os.open(destination / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup is being written into {destination}",
                              "wait for it to finish, then run this one again") from None
        remove_leftovers(destination)
        yield
    finally:
        os.close(fd)


def work_dir(destination: Path, name: str) -> Path:
    """The private work directory of the backup ``name`` while it is made (database copy, export)."""
    return Path(destination) / f"{WORK_PREFIX}{name}"


def remove_leftovers(destination: Path) -> None:
    """The work directory of a run that crashed: its archive files without a sidecar are partial,
    and a plaintext beside an encrypted archive must not stay. Held: the destination lock."""
    for entry in os.scandir(destination):
        if not (entry.name.startswith(WORK_PREFIX) and entry.is_dir(follow_symlinks=False)):
            continue
        name = entry.name[len(WORK_PREFIX):]
        record = read_record(sidecar_path(destination, name))
        if record is None or record.encrypted:
            remove_quietly(Path(destination) / f"{name}{ARCHIVE_SUFFIX}")
        if record is None:
            remove_quietly(Path(destination) / f"{name}{ENCRYPTED_SUFFIX}")
        shutil.rmtree(entry.path, ignore_errors=True)
    fsync_dir(destination)

