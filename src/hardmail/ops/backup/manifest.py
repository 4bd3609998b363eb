"""The manifest of a backup archive: what the archive restores, file by file, with the SHA-256,
size and mode of each, which archive of the chain holds its bytes, and the schema revision and
hardmail version that wrote it. Stored as ``MANIFEST.json``, the last member of the archive, and
as a copy in the data directory's backup state (so that an incremental backup can follow an
encrypted one without the private key).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

FORMAT = "hardmail-backup/1"
MANIFEST_MEMBER = "MANIFEST.json"
ARCHIVE_SUFFIX = ".tar.zst"
ENCRYPTED_SUFFIX = ".tar.zst.age"
SIDECAR_SUFFIX = ".json"
Kind = Literal["full", "incremental"]
_KIND_TAG = {"full": "full", "incremental": "incr"}


class ManifestError(Exception):
    """A manifest that cannot be read; ``str()`` says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the restored state. ``path`` is where it restores (relative to the restore
    directory's layout: ``files/...``, ``database/...``, ``config/...``, ``external/...``);
    ``archive``/``member`` are the archive of the chain that holds its bytes and the member name
    there (``member`` differs from ``path`` when a Maildir file was renamed since)."""

    path: str
    size: int
    sha256: str
    mode: int
    mtime_ns: int
    archive: str
    member: str

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> FileEntry:
        return cls(path=str(value["path"]), size=int(value["size"]), sha256=str(value["sha256"]),
                   mode=int(value["mode"]), mtime_ns=int(value["mtime_ns"]), archive=str(value["archive"]),
                   member=str(value.get("member", value["path"])))


_ENTRY_FIELDS = tuple(f.name for f in fields(FileEntry))
assert _ENTRY_FIELDS == ("path", "size", "sha256", "mode", "mtime_ns", "archive", "member"), "update _entry_line"
_quoted = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # json's C string encoder


def _entry_line(entry: FileEntry) -> str:
    """One file entry as a JSON object, keys sorted (1 µs; json.dumps of a dict takes 5)."""
    return (f'{{"archive": {_quoted(entry.archive)}, "member": {_quoted(entry.member)}, "mode": {int(entry.mode)}, '
            f'"mtime_ns": {int(entry.mtime_ns)}, "path": {_quoted(entry.path)}, "sha256": {_quoted(entry.sha256)}, '
            f'"size": {int(entry.size)}}}')


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    kind: Literal["sqlite", "postgresql"]
    member: str  # database/hardmail.db, or database/tables for a logical export
    dump_member: str | None = None  # database/postgres.dump when pg_dump made one


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    kind: Kind
    parent: str | None
    chain: tuple[str, ...]
    created_at: str
    hardmail_version: str
    schema_revision: str | None
    database: DatabaseInfo
    data_dir: str
    config_file: str | None
    files: tuple[FileEntry, ...]
    notes: dict[str, int] = field(default_factory=dict)
    format: str = FORMAT

    def stored_here(self) -> list[FileEntry]:
        """The entries whose bytes are in this archive (not in an earlier one of the chain)."""
        return [entry for entry in self.files if entry.archive == self.name]

    def to_json(self) -> bytes:
        """Indented JSON with one line per file entry (``indent`` and ``asdict`` would cost 40 µs
        an entry, most of the time of an incremental backup)."""
        value = asdict(replace(self, files=()))
        value["chain"] = list(self.chain)
        head = json.dumps(value, indent=1, sort_keys=True)
        files = ",\n  ".join(map(_entry_line, self.files))
        head = head.replace('"files": []', f'"files": [\n  {files}\n ]' if files else '"files": []', 1)
        return head.encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            value = json.loads(data)
            if not isinstance(value, dict):
                raise ManifestError(f"the manifest is damaged (a JSON {type(value).__name__}, not an object)")
            if value.get("format") != FORMAT:
                raise ManifestError(f"not a {FORMAT} manifest (format {value.get('format')!r})")
            return cls(
                name=value["name"], kind=value["kind"], parent=value.get("parent"),
                chain=tuple(value["chain"]), created_at=value["created_at"],
                hardmail_version=value["hardmail_version"], schema_revision=value.get("schema_revision"),
                database=DatabaseInfo(**value["database"]), data_dir=value["data_dir"],
                config_file=value.get("config_file"),
                files=tuple(FileEntry.from_json(entry) for entry in value["files"]),
                notes=_notes(value.get("notes", {})),
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"the manifest is damaged ({type(exc).__name__}: {exc})") from None


def _notes(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ManifestError(f"the manifest is damaged (its notes are a JSON {type(value).__name__}, not an object)")
    return {str(k): int(v) for k, v in value.items()}


def utc_now() -> datetime:
    return datetime.now(UTC)


def archive_name(kind: Kind, at: datetime) -> str:
    """``hardmail-20261203T030000123456Z-full``: sorts by time; microseconds keep two backups of
    one second apart."""
    return f"hardmail-{at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{_KIND_TAG[kind]}"


def archive_file_name(name: str, encrypted: bool) -> str:
    return name + (ENCRYPTED_SUFFIX if encrypted else ARCHIVE_SUFFIX)


def name_of_archive_file(file_name: str) -> str | None:
    """The archive name of ``hardmail-...-full.tar.zst[.age]``, or None for any other file."""
    for suffix in (ENCRYPTED_SUFFIX, ARCHIVE_SUFFIX):
        if file_name.startswith("hardmail-") and file_name.endswith(suffix):
            return file_name[: -len(suffix)]
    return None
