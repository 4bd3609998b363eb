"""The archive side of a selective restore: the files it needs taken out of an archive chain into a
private scratch directory (hash-checked against the manifest), and the archived database opened
there as a store of its own, brought to this version's schema, to be read like a live one.

Extraction follows the chain (``manifest.chain``: the archives sit in the same directory, as
``<name>.tar.zst`` or ``<name>.tar.zst.age``): this archive is read once (its manifest is its last
member; members that may be needed are kept while it is read), then each older archive that holds
bytes of a selected entry is read once for those. :func:`extract_selected` has the shape of
``restore.extract_chain`` so that it can be swapped for it.

The archived database is ``database/hardmail.db`` (an SQLite copy: migrated in place, in the scratch
directory) or ``database/tables/<table>.jsonl`` (a PostgreSQL logical export: loaded into a new
SQLite database at this version's schema). Neither is ever the live database.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import Boolean, Integer, Table, delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.ops.backup.archive import ArchiveError, copy_member, iter_members
from hardmail.ops.backup.manifest import (
    ARCHIVE_SUFFIX,
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    FileEntry,
    Manifest,
    ManifestError,
)
from hardmail.store import open_store
from hardmail.store.ports import Store
from hardmail.store.sql.migrate import upgrade_database
from hardmail.store.sql.tables import UtcDateTime, metadata

ProgressCallback = Callable[[str, int, int], None]  # (phase, done_bytes, total_bytes), as create.py's
EntryFilter = Callable[[FileEntry], bool]
SQLITE_MEMBER = "database/hardmail.db"
TABLES_PREFIX = "database/tables/"
# what a selective restore reads of a logical export (the other tables are mail in transit, counters...)
EXPORT_TABLES = ("domains", "addresses", "accounts", "aliases", "alias_targets", "settings", "account_credentials",
                 "recovery_codes", "app_passwords", "access_ranges", "queue_routes", "mailbox_accounts",
                 "mailbox_folders", "mailbox_messages", "mailbox_subscriptions")
_STAGED = ".staged"


class SelectiveError(Exception):
    """A selective restore that cannot be done: ``message`` says what was wrong, ``hint`` what to
    do (never a secret)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# --- extraction ------------------------------------------------------------------------------

def extract_selected(archive: Path, into: Path, identities: Sequence[Path] = (),
                     select: EntryFilter = lambda entry: True, progress: ProgressCallback | None = None,
                     *, may_need: Callable[[str], bool] | None = None, manifest: Manifest | None = None) -> Manifest:
    """Write every selected manifest entry to ``into/<entry.path>`` (hash-checked), from whichever
    archive of the chain holds it; returns the manifest of ``archive``. ``may_need``: a cheap test
    of a member name of ``archive`` itself, to keep fewer members while its manifest is unknown
    (by default the same test as ``select``, on the member name). ``manifest``: the manifest read
    already (by an earlier call): ``archive`` itself is read only when it holds a selected entry."""
    if manifest is None or any(select(e) and e.archive == manifest.name for e in manifest.files):
        keep = may_need or (lambda member: select(_probe(member)))
        if manifest is not None:
            members = {e.member for e in manifest.files if select(e) and e.archive == manifest.name}
            keep = members.__contains__
        read, staged = _read_head(archive, into / _STAGED, identities, keep, progress)
        if manifest is not None and read != manifest:
            raise SelectiveError(f"the archive {archive.name} changed while it was restored from",
                                 "run the restore again")
        manifest = read
    else:
        staged = {}
    wanted = [entry for entry in manifest.files if select(entry)]
    for entry in wanted:
        _safe_relative(entry.path)
    later = _place_staged([e for e in wanted if e.archive == manifest.name], staged, into / _STAGED, into)
    by_archive: dict[str, list[FileEntry]] = defaultdict(list)
    for entry in [*later, *(e for e in wanted if e.archive != manifest.name)]:
        by_archive[entry.archive].append(entry)
    for name, entries in by_archive.items():
        source = archive if name == manifest.name else _chain_file(archive.parent, name, manifest)
        _extract_from(source, entries, into, identities, progress)
    _remove_tree(into / _STAGED)
    return manifest


def _probe(member: str) -> FileEntry:
    """A stand-in entry for testing a member name with an entry filter (the path is what filters test)."""
    return FileEntry(member, 0, "", 0, 0, "", member)


def _read_head(archive: Path, staging: Path, identities: Sequence[Path], may_need: Callable[[str], bool],
               progress: ProgressCallback | None) -> tuple[Manifest, dict[str, tuple[int, str]]]:
    """The manifest of ``archive``, and (size, SHA-256) of each member kept in ``staging``."""
    found: Manifest | None = None
    staged: dict[str, tuple[int, str]] = {}
    done = 0
    try:
        for info, stream in _members(archive, identities):
            if info.name == MANIFEST_MEMBER:
                found = _parse_manifest(stream.read(), archive)
                continue
            if not may_need(info.name):
                continue
            staged[info.name] = _copy_to(stream, staging / _safe_relative(info.name))
            done += info.size
            if progress is not None:
                progress(f"reading {archive.name}", done, 0)
    except ArchiveError as exc:  # met while a member's bytes were read
        raise _damaged(exc) from None
    if found is None:
        raise SelectiveError(f"the archive {archive.name} has no manifest: it is truncated or not a hardmail backup",
                             "use another archive; `hardmail backup verify` checks one")
    return found, staged


def _parse_manifest(data: bytes, archive: Path) -> Manifest:
    try:
        return Manifest.from_json(data)
    except ManifestError as exc:
        raise SelectiveError(f"{archive.name}: {exc}", "use another archive") from None


def _place_staged(entries: Iterable[FileEntry], staged: dict[str, tuple[int, str]], staging: Path,
                  into: Path) -> list[FileEntry]:
    """Move the staged members of the selected entries into place; returns the entries whose member
    was not staged (the member name did not pass the early test: they are read again)."""
    later = []
    for entry in entries:
        source = staging / _safe_relative(entry.member)
        if entry.member not in staged or not source.is_file():
            later.append(entry)
            continue
        _check(staged[entry.member], entry, entry.archive)
        target = into / _safe_relative(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.replace(source, target)
    return later


def _extract_from(path: Path, entries: list[FileEntry], into: Path, identities: Sequence[Path],
                  progress: ProgressCallback | None) -> None:
    by_member: dict[str, list[FileEntry]] = defaultdict(list)
    for entry in entries:
        by_member[entry.member].append(entry)
    total, done = sum(entry.size for entry in entries), 0
    for info, stream in _members(path, identities):
        targets = by_member.pop(info.name, None)
        if not targets:
            continue
        first = into / _safe_relative(targets[0].path)
        try:
            content = _copy_to(stream, first)
        except ArchiveError as exc:  # met while the member's bytes were read
            raise _damaged(exc) from None
        for entry in targets:
            _check(content, entry, path.name)
        for entry in targets[1:]:
            _copy_file(first, into / _safe_relative(entry.path))
        done += info.size
        if progress is not None:
            progress(f"reading {path.name}", done, total)
    if by_member:
        missing = next(iter(by_member))
        raise SelectiveError(f"the archive {path.name} lacks {missing}, which the manifest says it holds",
                             "the chain is damaged: `hardmail backup verify` shows what else is wrong")


def _members(archive: Path, identities: Sequence[Path]) -> Iterable[tuple[Any, IO[bytes]]]:
    """The members of ``archive``; damage met while the members (or their bytes, read by the
    caller inside the loop) are read is a SelectiveError."""
    try:
        yield from iter_members(archive, identities)
    except ArchiveError as exc:
        raise _damaged(exc) from None


def _damaged(exc: ArchiveError) -> SelectiveError:
    return SelectiveError(str(exc), "check the archive with `hardmail backup verify`, and the --identity "
                          "files for an encrypted one")


def _chain_file(directory: Path, name: str, manifest: Manifest) -> Path:
    if name not in manifest.chain:
        raise SelectiveError(f"the manifest of {manifest.name} names {name}, which is not in its chain",
                             "the archive is damaged: use another one")
    for suffix in (ARCHIVE_SUFFIX, ENCRYPTED_SUFFIX):
        candidate = directory / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    raise SelectiveError(f"the archive {name} of the chain of {manifest.name} is not in {directory}",
                         f"copy {name}{ARCHIVE_SUFFIX} (or .age) back next to {manifest.name}")


def _copy_to(stream: IO[bytes], target: Path) -> tuple[int, str]:
    """Copy a member into ``target`` (0600); its (size, SHA-256) as copied."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        return copy_member(stream, handle)


def _copy_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(source, "rb") as reader:
        _copy_to(reader, target)


def _check(content: tuple[int, str], entry: FileEntry, archive: str) -> None:
    if content != (entry.size, entry.sha256):
        raise SelectiveError(f"{entry.member} in {archive} does not match its manifest (size or SHA-256)",
                             "the archive is damaged: `hardmail backup verify` shows what else is wrong")


def _safe_relative(name: str) -> PurePosixPath:
    """A member or entry path as a relative path that stays inside the directory it is put in."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise SelectiveError(f"the archive names a file outside its tree ({name!r})",
                             "do not use this archive: it was not written by hardmail")
    return path


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --- the archived database -------------------------------------------------------------------

def database_filter(entry: FileEntry) -> bool:
    """The database members a selective restore reads (not ``postgres.dump``)."""
    return entry.path == SQLITE_MEMBER or (entry.path.startswith(TABLES_PREFIX)
                                           and entry.path[len(TABLES_PREFIX):-len(".jsonl")] in EXPORT_TABLES)


async def open_archived_store(into: Path, manifest: Manifest) -> Store:
    """The archived database extracted under ``into``, as a store at this version's schema."""
    if manifest.database.kind == "sqlite":
        path = into / SQLITE_MEMBER
        if not path.is_file():
            raise SelectiveError("the archive holds no database copy", "use another archive")
        return await _migrated(f"sqlite+aiosqlite:///{path}")
    store = await _migrated(f"sqlite+aiosqlite:///{into / 'database' / 'from-tables.db'}")
    try:
        await _load_tables(store.engine, into / "database" / "tables")  # type: ignore[attr-defined]
    except BaseException:
        await store.close()
        raise
    return store


async def _migrated(url: str) -> Store:
    store = await open_store(url)
    try:
        await upgrade_database(url)  # a scratch copy out of the archive: no backup of it needed
    except Exception as exc:
        await store.close()
        raise SelectiveError(f"the archived database cannot be brought to this version's schema ({exc})",
                             "restore with the hardmail version that wrote the archive, or a newer one") from None
    return store


async def _load_tables(engine: AsyncEngine, directory: Path) -> None:
    async with engine.begin() as conn:
        for table in metadata.sorted_tables:
            path = directory / f"{table.name}.jsonl"
            if table.name not in EXPORT_TABLES or not path.is_file():
                continue
            rows = [_typed_row(table, json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
            await conn.execute(delete(table))  # what the new schema holds (its writer setting) gives way
            if rows:
                await conn.execute(insert(table), rows)


def _typed_row(table: Table, value: dict[str, Any]) -> dict[str, Any]:
    """A JSON row with the Python values of its columns (times given as ISO 8601 or epoch seconds)."""
    row = {}
    for column in table.columns:
        if column.name not in value:
            continue
        item = value[column.name]
        if item is not None and isinstance(column.type, UtcDateTime):
            item = _time(item)
        elif item is not None and isinstance(column.type, Boolean):
            item = bool(item)
        elif item is not None and isinstance(column.type, Integer):
            item = int(item)
        row[column.name] = item
    return row


def _time(value: Any) -> datetime:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
