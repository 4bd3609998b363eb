"""Verifying an archive: every member of it and of each earlier archive of its chain read and
re-hashed against the manifests, the database copy opened and checked, and the mailbox index and
the outbound queue compared with the files the archive restores.

What is checked (each problem is one failure line; the report is ok only when there is none):
- each archive of the chain is there and complete (a truncated one has no ``MANIFEST.json``), and
  its manifest belongs to the chain; every entry stored in an archive is a member of it with the
  manifest's size and SHA-256, and every member is in that archive's manifest;
- the database: an SQLite copy passes ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``
  and is at the manifest's schema revision; every line of a PostgreSQL logical export is a JSON
  object, and ``pg_restore --list`` reads ``postgres.dump`` (when pg_restore is installed);
- every message of the mailbox index has its file under ``files/mail/<domain>/<local>/
  [.Folder/](cur|new)/`` (matched by folder directory and base name before ``:2,``, the
  directories named as the mailbox store names them) and every message file its index entry;
  every queue entry has its spool message and envelope, and every envelope its queue entry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from hardmail.core.bulk import bulk_allocation
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.spool import is_queue_id
from hardmail.mailbox import names
from hardmail.mailbox.files import INFO_SEPARATOR
from hardmail.ops.backup.archive import ArchiveError, opened_plaintext
from hardmail.ops.backup.catalog import read_record, sidecar_path
from hardmail.ops.backup.manifest import (
    ENCRYPTED_SUFFIX,
    MANIFEST_MEMBER,
    SIDECAR_SUFFIX,
    FileEntry,
    Manifest,
    ManifestError,
)
from hardmail.ops.backup.restore import (
    MAX_MANIFEST_BYTES,
    RestoreError,
    check_member_name,
    find_archive,
    stored_bytes_hint,
)
from hardmail.ops.backup.tarstream import Written, open_tar
from hardmail.store.sql.migrate import effective_revision

ProgressCallback = Callable[[str, int, int], None]
MAX_FAILURES = 300
_MAX_DATABASE_LINES = 20
_SPOOL_QUEUE = "files/spool/queue/"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    failures: tuple[str, ...]
    files_checked: int
    messages_checked: int
    # the failures counted by kind, without file names or addresses (for the sidecar record)
    summary: tuple[str, ...] = ()


class _Failures:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0
        self.kinds: Counter[str] = Counter()

    def add(self, subject: str, problem: str, kind: str | None = None) -> None:
        self.count += 1
        self.kinds[kind or problem] += 1
        if len(self.lines) < MAX_FAILURES:
            self.lines.append(f"{subject}: {problem}" if subject else problem)

    def report(self, files: int, messages: int) -> VerifyReport:
        lines = list(self.lines)
        if self.count > len(lines):
            lines.append(f"... and {self.count - len(lines)} more failures")
        summary = tuple(f"{count} times: {kind}" if count > 1 else kind for kind, count in self.kinds.items())
        return VerifyReport(self.count == 0, tuple(lines), files, messages, summary)


@dataclass
class _Scan:
    """What reading one archive found: member → (size, sha256), its manifest, and whether the
    stream was read to its end."""

    file: Path
    members: dict[str, tuple[int, str | None]] = field(default_factory=dict)  # None: not hashed
    manifest: Manifest | None = None
    complete: bool = False
    manifest_data: bytes = b""
    tar_size: int = 0


@dataclass
class _Progress:
    callback: ProgressCallback | None
    phase: str = "verifying"
    done: int = 0
    total: int = 0

    def __call__(self, count: int) -> None:
        self.done += count
        if self.callback is not None:
            self.callback(self.phase, self.done, self.total)


def verify_archive(archive: Path, identities: Sequence[Path] = (),
                   progress: ProgressCallback | None = None, *,
                   manifests: Mapping[str, Manifest] | None = None) -> VerifyReport:
    """Check ``archive`` and the earlier archives of its chain (see the module docstring).
    ``manifests``: earlier archives of the chain taken as these manifests say instead of read (a
    new incremental archive after encrypted ones, which the server cannot decrypt: create passes
    the manifest copies of the state directory, for archives whose own verification passed)."""
    failures = _Failures()
    counter = _Progress(progress)
    with tempfile.TemporaryDirectory(prefix="hardmail-verify-") as scratch, bulk_allocation():  # a record per file
        extracted = Path(scratch)
        target = _scan(archive, identities, failures, counter, extract_to=extracted)
        manifest = target.manifest
        if manifest is None:
            return failures.report(0, 0)
        scans: dict[str, _Scan | None] = {manifest.name: target}
        _check_chain_shape(manifest, failures)
        _check_own(target, manifest, failures)
        for position, name in enumerate(manifest.chain[:-1]):
            if manifests is not None and name in manifests:
                kept = manifests[name]
                scans[name] = _scan_as_listed(archive.parent, name, kept, failures) \
                    if _belongs(kept, name, manifest.chain[:position + 1], name, failures) else None
                continue
            scans[name] = _scan_earlier(archive.parent, name, manifest.chain[:position + 1], identities,
                                        failures, counter)
        _check_held(manifest, scans, failures)
        messages = _check_contents(manifest, extracted, failures)
    return failures.report(len(manifest.files), messages)


class CannotVerify(Exception):
    """The chain of a new archive cannot be checked here (an earlier archive is encrypted and was
    never verified); ``str()`` says which, for the admin."""


def verify_created(archive: Path, manifest: Manifest, manifest_json: bytes, written: Written,
                   parent: Manifest | None = None, progress: ProgressCallback | None = None) -> VerifyReport:
    """The check ``hardmail backup create`` makes of the plaintext archive it has just written
    (``written``: what the writer says it wrote; ``parent``: the manifest an incremental one was
    built on). Everything :func:`verify_archive` checks, with two differences:

    - The new archive is read back and decompressed whole, but its members are not hashed with
      SHA-256 again: the zstd frame carries a content checksum (XXH64 of the whole decompressed
      stream) that zstd checks when it decodes the frame's end, and the file must be the size
      the writer wrote, so that the end is in it. A read that passes proves that the bytes on disk
      decompress to exactly the stream that was written, and every member of that stream was
      hashed for the manifest from the very bytes handed to the compressor; a second SHA-256
      would prove the same again for a third of the backup's time. (The checksum is against
      damage, not forgery: an archive's manifest is inside it anyway.) The manifest read back
      must be the bytes written. ``hardmail backup verify`` re-hashes every member.
    - The earlier archives of the chain are not read: each was verified in full when it was made.
      Each must be there, the size its record (sidecar) says, with a record of this chain whose
      verification passed, and hold what the parent's manifest says the new archive takes from
      it. Re-hashing them (the full archive is most of a chain's bytes) would cost more than the
      whole incremental backup; ``hardmail backup verify`` reads them all. An earlier archive
      that was never verified is read in full here, or, when encrypted (the server has no key),
      the new one is left unverified: CannotVerify.
    """
    failures = _Failures()
    counter = _Progress(progress)
    with tempfile.TemporaryDirectory(prefix="hardmail-verify-") as scratch, bulk_allocation():  # a record per file
        extracted = Path(scratch)
        target = _read_back(archive, manifest_json, written, failures, counter, extracted)
        if not target.complete:
            return failures.report(0, 0)
        target.manifest = manifest
        scans: dict[str, _Scan | None] = {manifest.name: target}
        _check_chain_shape(manifest, failures)
        _check_own(target, manifest, failures)
        for position, name in enumerate(manifest.chain[:-1]):
            scans[name] = _earlier_as_recorded(archive.parent, name, manifest.chain[:position + 1], parent,
                                               failures, counter)
        _check_held(manifest, scans, failures)
        messages = _check_contents(manifest, extracted, failures)
    return failures.report(len(manifest.files), messages)


def _read_back(archive: Path, manifest_json: bytes, written: Written, failures: _Failures, counter: _Progress,
               extracted: Path) -> _Scan:
    size = archive.stat().st_size
    if size != written.file_size:
        failures.add(archive.name, f"{size} bytes on disk, {written.file_size} were written",
                     "the new archive is not the size written")
        return _Scan(archive)
    scan = _scan(archive, (), failures, counter, extract_to=extracted, hashing=False)
    if not scan.complete or not scan.manifest_data:
        scan.complete = False
    elif scan.tar_size != written.tar_size:
        failures.add(archive.name, f"it decompresses to {scan.tar_size} bytes, {written.tar_size} were written",
                     "the new archive does not decompress to what was written")
        scan.complete = False
    elif scan.manifest_data != manifest_json:
        failures.add(archive.name, f"its {MANIFEST_MEMBER} is not the one written", "a manifest is damaged")
        scan.complete = False
    return scan


def _earlier_as_recorded(directory: Path, name: str, chain: tuple[str, ...], parent: Manifest | None,
                         failures: _Failures, counter: _Progress) -> _Scan | None:
    """An earlier archive of a new one's chain, checked against its record (see verify_created)."""
    path = find_archive(directory, name)
    record = read_record(sidecar_path(directory, name))
    if path is None or record is None or record.verify is None or parent is None:
        if path is not None and path.name.endswith(ENCRYPTED_SUFFIX):
            raise CannotVerify(f"the earlier archive {name} of its chain is encrypted and was not verified; "
                               "verify the chain with its identity")
        return _scan_earlier(directory, name, chain, (), failures, counter)  # read in full (or: missing)
    if not record.verify.ok:
        failures.add(name, "this archive of the chain failed its own verification (`hardmail backup verify` "
                     "lists why)", "an archive of the chain failed its verification")
        return None
    if record.chain != chain or record.archive_file != path.name:
        failures.add(name, f"its record {name}{SIDECAR_SUFFIX} is not that of this archive of the chain",
                     "an archive of the chain is not the one named")
        return None
    size = path.stat().st_size
    if size != record.archive_size:
        failures.add(path.name, f"{size} bytes, its record says {record.archive_size}: the file changed or was cut "
                     "short since it was made", "an archive of the chain changed since it was made")
        return None
    return _scan_as_listed(directory, name, parent, failures)


# --- reading archives ------------------------------------------------------------------------

def _scan(archive: Path, identities: Sequence[Path], failures: _Failures, counter: _Progress,
          extract_to: Path | None = None, hashing: bool = True) -> _Scan:
    """Read every member of ``archive``; the ``database/`` members are copied under
    ``extract_to`` when given. Without ``hashing`` the members are counted, not hashed, and the
    manifest is kept as bytes (:func:`verify_created`). Problems are added to ``failures``."""
    scan = _Scan(archive)
    counter.phase, counter.done, counter.total = f"verifying {archive.name}", 0, stored_bytes_hint(archive)
    manifest_data: bytes | None = None
    try:
        with opened_plaintext(archive, identities) as plain, open_tar(plain, archive.name) as tar:
            for member in tar.members():
                if not member.regular:
                    continue
                if manifest_data is not None:
                    failures.add(archive.name, f"member {member.name[:200]} comes after {MANIFEST_MEMBER}",
                                 "a member comes after MANIFEST.json")
                if member.name == MANIFEST_MEMBER:
                    manifest_data = tar.read_all() if member.size <= MAX_MANIFEST_BYTES else b""
                    continue
                _scan_member(scan, member.name, tar.chunks(), failures, counter, extract_to, hashing)
            scan.tar_size = tar.tar_size
        scan.complete = True
    except ArchiveError as exc:
        failures.add("", str(exc), "an archive is damaged or truncated")
        return scan
    if manifest_data is None:
        failures.add(archive.name, f"archive truncated: it has no {MANIFEST_MEMBER}",
                     "an archive is truncated (no MANIFEST.json)")
        return scan
    scan.manifest_data = manifest_data
    if hashing:
        try:
            scan.manifest = Manifest.from_json(manifest_data)
        except ManifestError as exc:
            failures.add(archive.name, str(exc), "a manifest is damaged")
    return scan


def _scan_member(scan: _Scan, name: str, chunks: Iterator[memoryview], failures: _Failures, counter: _Progress,
                 extract_to: Path | None, hashing: bool) -> None:
    if name in scan.members:
        failures.add(name, f"appears twice in {scan.file.name}", "a member appears twice")
    try:
        path = check_member_name(name)
    except RestoreError:
        failures.add(scan.file.name, f"member {name[:200]!r} has an unsafe name", "a member has an unsafe name")
        scan.members[name] = _digest(chunks, counter, True)
        return
    if extract_to is not None and path.parts[0] == "database":
        target = extract_to / path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(target, "wb") as out:
            scan.members[name] = _digest(chunks, counter, hashing, out)
        return
    scan.members[name] = _digest(chunks, counter, hashing)


def _digest(chunks: Iterator[memoryview], counter: _Progress, hashing: bool,
            out: IO[bytes] | None = None) -> tuple[int, str | None]:
    """(size, sha256 hex or None without ``hashing``) of a member's data, copied to ``out``."""
    digest = hashlib.sha256() if hashing else None
    size = 0
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        if out is not None:
            out.write(chunk)
        size += len(chunk)
    counter(size)
    return size, None if digest is None else digest.hexdigest()


def _scan_earlier(directory: Path, name: str, chain: tuple[str, ...], identities: Sequence[Path],
                  failures: _Failures, counter: _Progress) -> _Scan | None:
    path = find_archive(directory, name)
    if path is None:
        failures.add(name, f"this archive of the chain is missing from {directory}",
                     "an archive of the chain is missing")
        return None
    scan = _scan(path, identities, failures, counter)
    if scan.manifest is not None and _belongs(scan.manifest, name, chain, path.name, failures):
        _check_own(scan, scan.manifest, failures)
    return scan


def _belongs(manifest: Manifest, name: str, chain: tuple[str, ...], shown: str, failures: _Failures) -> bool:
    """Whether ``manifest`` is that of archive ``name`` of this chain (a failure if not)."""
    if manifest.name == name and manifest.chain == chain:
        return True
    failures.add(shown, f"its manifest is that of {manifest.name} (chain {', '.join(manifest.chain)}), not of "
                 f"{name} of this chain", "an archive of the chain is not the one named")
    return False


def _scan_as_listed(directory: Path, name: str, manifest: Manifest, failures: _Failures) -> _Scan | None:
    """An earlier archive that is not read: its members are the entries ``manifest`` (its own,
    or a later one of the chain) says it holds."""
    path = find_archive(directory, name)
    if path is None:
        failures.add(name, f"this archive of the chain is missing from {directory}",
                     "an archive of the chain is missing")
        return None
    members: dict[str, tuple[int, str | None]] = {
        entry.member: (entry.size, entry.sha256) for entry in manifest.files if entry.archive == name}
    return _Scan(path, members, manifest, complete=True)


# --- the manifests against the members -------------------------------------------------------

def _check_chain_shape(manifest: Manifest, failures: _Failures) -> None:
    chain = manifest.chain
    if not chain or chain[-1] != manifest.name:
        failures.add(manifest.name, "the manifest's chain does not end with the archive itself", "a chain is damaged")
    elif manifest.kind == "full" and (len(chain) != 1 or manifest.parent is not None):
        failures.add(manifest.name, "a full archive with a parent", "a chain is damaged")
    elif manifest.kind == "incremental" and (len(chain) < 2 or manifest.parent != chain[-2]):
        failures.add(manifest.name, "an incremental archive whose parent is not the previous archive of its chain",
                     "a chain is damaged")


def _check_own(scan: _Scan, manifest: Manifest, failures: _Failures) -> None:
    """Every entry the archive's own manifest stores in it is a member with its size and hash,
    and every member is one of them."""
    stored = manifest.stored_here()
    for entry in stored:
        _check_entry(entry, scan, failures)
    listed = {entry.member for entry in stored}
    for member in scan.members:
        if member not in listed:
            failures.add(member, f"in archive {scan.file.name} but not in its manifest",
                         "a member is not in the manifest")


def _check_entry(entry: FileEntry, scan: _Scan, failures: _Failures) -> None:
    found = scan.members.get(entry.member)
    if found is None:
        if scan.complete:  # a damaged stream is one failure already, not one per file after it
            failures.add(entry.path, f"missing from archive {scan.file.name}", "a file is missing from its archive")
        return
    size, sha256 = found
    if size != entry.size:
        failures.add(entry.path, f"size differs from the manifest ({size} bytes, the manifest says {entry.size})",
                     "a file's size differs from the manifest")
    elif sha256 is not None and sha256 != entry.sha256:
        failures.add(entry.path, "SHA-256 differs from the manifest", "a file's SHA-256 differs from the manifest")


def _check_held(manifest: Manifest, scans: dict[str, _Scan | None], failures: _Failures) -> None:
    """Entries of this manifest whose bytes are in an earlier archive: there, and the same."""
    for entry in manifest.files:
        if entry.archive == manifest.name:
            continue
        if entry.archive not in scans:
            failures.add(entry.path, f"held by archive {entry.archive}, which is not in the chain",
                         "a file is held by an archive outside the chain")
            continue
        scan = scans[entry.archive]
        if scan is not None:
            _check_entry(entry, scan, failures)


# --- the database and the index --------------------------------------------------------------

@dataclass
class _Contents:
    """What the database says is there: message rows and queue ids."""

    messages: list[tuple[str, str, str, int]] = field(default_factory=list)  # account, folder, base, uid
    queue_ids: set[str] = field(default_factory=set)
    indexed: bool = False  # the database has a mailbox index (revisions before it have none)


def _check_contents(manifest: Manifest, extracted: Path, failures: _Failures) -> int:
    member = manifest.database.member
    if manifest.database.kind == "sqlite":
        contents = _check_sqlite(extracted / member, member, manifest.schema_revision, failures)
    else:
        contents = _check_logical(extracted / member, member, failures)
        _check_dump(extracted, manifest.database.dump_member, failures)
    if contents is None:
        return 0
    if contents.indexed:
        _check_index(manifest.files, contents.messages, failures)
    _check_queue(manifest.files, contents.queue_ids, failures)
    return len(contents.messages)


def _check_sqlite(path: Path, member: str, revision: str | None, failures: _Failures) -> _Contents | None:
    if not path.is_file():
        failures.add(member, "the database copy is not in the archive", "the database copy is missing")
        return None
    try:
        connection = sqlite3.connect(path)
    except sqlite3.Error as exc:
        failures.add(member, f"cannot be opened ({exc})", "the database copy cannot be opened")
        return None
    try:
        return _sqlite_contents(connection, member, revision, failures)
    except sqlite3.DatabaseError as exc:
        failures.add(member, f"is not a usable SQLite database ({exc})", "the database copy is damaged")
        return None
    finally:
        connection.close()


def _sqlite_contents(connection: sqlite3.Connection, member: str, revision: str | None,
                     failures: _Failures) -> _Contents:
    problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        for problem in problems[:_MAX_DATABASE_LINES]:
            failures.add(member, f"integrity check: {problem}", "the database copy fails its integrity check")
    for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check").fetchmany(_MAX_DATABASE_LINES):
        failures.add(member, f"foreign key check: row {rowid} of {table} refers to a missing row of {parent}",
                     "the database copy fails its foreign key check")
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = effective_revision([row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]) \
        if "alembic_version" in tables else None
    if found != effective_revision([part for part in (revision or "").split(",") if part]):
        failures.add(member, f"is at schema revision {found}, the manifest says {revision}",
                     "the database copy is not at the manifest's schema revision")
    contents = _Contents(indexed={"mailbox_messages", "mailbox_folders"} <= tables)
    if contents.indexed:
        contents.messages = connection.execute(  # the rows as they are: a value of another type matches nothing
            "SELECT f.account, f.name, m.name, m.uid FROM mailbox_messages m "
            "JOIN mailbox_folders f ON f.id = m.folder_id").fetchall()
    if "queue_messages" in tables:
        contents.queue_ids = {str(row[0]) for row in connection.execute("SELECT queue_id FROM queue_messages")}
    return contents


def _check_logical(tables: Path, member: str, failures: _Failures) -> _Contents | None:
    files = sorted(tables.glob("*.jsonl")) if tables.is_dir() else []
    if not files:
        failures.add(member, "the logical export of the database is not in the archive", "the database copy is missing")
        return None
    rows: dict[str, list[dict[str, Any]]] = {"mailbox_folders": [], "mailbox_messages": [], "queue_messages": []}
    for path in files:
        kept = rows.get(path.stem)
        for number, row in _json_lines(path, f"{member}/{path.name}", failures):
            if kept is None:
                continue
            if _has(row, path.stem):
                kept.append(row)
            else:
                failures.add(f"{member}/{path.name} line {number}", "a row without its key columns",
                             "a logical export line lacks its key columns")
    contents = _Contents(indexed=(tables / "mailbox_folders.jsonl").is_file())
    folders = {row["id"]: (str(row["account"]), str(row["name"])) for row in rows["mailbox_folders"]}
    for row in rows["mailbox_messages"]:
        account, folder = folders.get(row["folder_id"], ("?", "?"))
        contents.messages.append((account, folder, str(row["name"]), int(row["uid"])))
    contents.queue_ids = {str(row["queue_id"]) for row in rows["queue_messages"]}
    return contents


_KEY_COLUMNS = {"mailbox_folders": ("id", "account", "name"), "mailbox_messages": ("folder_id", "name", "uid"),
                "queue_messages": ("queue_id",)}


def _has(row: dict[str, Any], table: str) -> bool:
    return all(column in row for column in _KEY_COLUMNS[table])


def _json_lines(path: Path, shown: str, failures: _Failures) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                failures.add(f"{shown} line {number}", "is not a JSON object", "a logical export line does not parse")
                continue
            yield number, row


def _check_dump(extracted: Path, dump_member: str | None, failures: _Failures) -> None:
    if not dump_member or shutil.which("pg_restore") is None:
        return
    dump = extracted / dump_member
    if not dump.is_file():
        return  # missing members are reported against the manifest
    done = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        failures.add(dump_member, f"pg_restore cannot read it ({reason})", "pg_restore cannot read the dump")


def _check_index(entries: Sequence[FileEntry], messages: list[tuple[str, str, str, int]], failures: _Failures) -> None:
    """Every index row has its message file, every message file its index row. (The directory
    of each account and folder is worked out once, not once per message.)"""
    folders: dict[str, bool] = {}
    files = {key: entry.path for entry in entries if (key := _file_key(entry.path, folders)) is not None}
    maildirs = MaildirStore(Path("/"), "verify")
    places: dict[tuple[str, str], tuple[str, str, str] | None] = {}
    indexed = set()
    for account, folder, base, uid in messages:
        if (account, folder) not in places:
            places[(account, folder)] = _index_place(maildirs, account, folder)
        place = places[(account, folder)]
        if place is None:
            failures.add(f"index entry {account} {folder} UID {uid}", "its account or folder name has no directory",
                         "an index entry names no directory")
            continue
        key = (*place, base)
        indexed.add(key)
        if key not in files:
            where = "/".join(part for part in ("files/mail", *place) if part)
            failures.add(f"index entry {account} {folder} UID {uid}",
                         f"its message file {where}/(cur|new)/{base} is not in the archive",
                         "an index entry has no message file")
    for key, path in files.items():
        if key not in indexed:
            failures.add(path, "message file has no index entry", "a message file has no index entry")


def _file_key(path: str, folders: dict[str, bool]) -> tuple[str, ...] | None:
    """(domain dir, local dir, folder dir, base name) of a message file entry (as
    ``restore.is_message_path`` tells them); ``folders``: whether each folder directory is one the
    server made, as found so far."""
    parts = path.split("/")
    if len(parts) not in (6, 7) or parts[0] != "files" or parts[1] != "mail" or parts[-1].startswith(".") \
            or parts[-2] not in ("cur", "new"):
        return None
    folder = ""
    if len(parts) == 7:
        folder = parts[4]
        if folder not in folders:  # not one the server made: a deleted folder's trash, another program's
            folders[folder] = folder.startswith(".") and names.name_of_dirname(folder) is not None
        if not folders[folder]:
            return None
    return parts[2], parts[3], folder, parts[-1].partition(INFO_SEPARATOR)[0]


def _index_place(maildirs: MaildirStore, account: str, folder: str) -> tuple[str, str, str] | None:
    """(domain dir, local dir, folder dir) of an index entry's folder, None when it has none."""
    if not isinstance(account, str) or not isinstance(folder, str):
        return None  # a damaged row
    try:
        directory = PurePosixPath(maildirs.mailbox_path(account))
        canonical = names.normalize(folder)
    except ValueError:
        return None
    return directory.parts[-2], directory.parts[-1], names.dirname(canonical)


def _check_queue(entries: Sequence[FileEntry], queue_ids: set[str], failures: _Failures) -> None:
    spooled: dict[str, set[str]] = {}
    for entry in entries:
        if entry.path.startswith(_SPOOL_QUEUE) and "/" not in entry.path[len(_SPOOL_QUEUE):]:
            stem, _, suffix = entry.path[len(_SPOOL_QUEUE):].rpartition(".")
            if is_queue_id(stem) and suffix in ("eml", "json"):
                spooled.setdefault(stem, set()).add(suffix)
    for queue_id in sorted(queue_ids):
        have = spooled.get(queue_id, set())
        for suffix, what in (("eml", "message"), ("json", "envelope")):
            if suffix not in have:
                failures.add(f"queue entry {queue_id}", f"its spool {what} {_SPOOL_QUEUE}{queue_id}.{suffix} is not in "
                             "the archive", f"a queue entry has no spool {what}")
    for queue_id, have in sorted(spooled.items()):
        if "json" in have and queue_id not in queue_ids:
            failures.add(f"{_SPOOL_QUEUE}{queue_id}.json", "spool entry has no queue entry in the database",
                         "a spool entry has no queue entry")
