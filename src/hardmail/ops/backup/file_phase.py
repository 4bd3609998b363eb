"""Step 2 of a backup (:mod:`hardmail.ops.backup.create`): taking the files of the data
directory into the archive, in one worker thread, after the database snapshot.

Each file the walk (:mod:`.sources`) found is stored (read once: hashed, compressed, counted), or
taken over from the parent's manifest by an incremental backup, or left out: a message file the
snapshot's index does not know is taken (and adopted into the copy) only when it was on disk
before the snapshot began; a spool file only when the snapshot's queue has its entry, and an
envelope only after its message. Indexed messages not met by the listing (renamed while their
directory was read) are looked for once more. What was stored becomes the :class:`FilesOutcome`
the database copy is then corrected to (:mod:`.snapshot`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hardmail.config.schema import Config
from hardmail.core.bulk import bulk_allocation
from hardmail.mailbox.files import served_size, split_name
from hardmail.ops.backup.archive import ArchiveError
from hardmail.ops.backup.catalog import DEFAULT_DESTINATION_NAME, BackupError
from hardmail.ops.backup.manifest import FileEntry, Manifest
from hardmail.ops.backup.snapshot import Adopted, FilesOutcome, IndexView, missing_messages
from hardmail.ops.backup.sources import (
    ALWAYS_STORED,
    FILES_PREFIX,
    MESSAGE,
    SPOOL,
    Identity,
    SourceFile,
    external_files,
    folder_messages,
    named_size,
    relative_inside,
    reusable_entries,
    walk,
)
from hardmail.ops.backup.tarstream import FastArchiveWriter
from hardmail.store.sql.engine import sqlite_database_file

ProgressCallback = Callable[[str, int, int], None]  # (phase, done bytes, total bytes)
_PROGRESS_STEP = 4 * 1024 * 1024


class Progress:
    """Calls the callback every few MiB, not for every file."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.phase, self.done, self.total, self._shown = "", 0, 0, 0

    def start(self, phase: str, total: int) -> None:
        self.phase, self.done, self.total, self._shown = phase, 0, total, 0
        self.callback(phase, 0, total)

    def add(self, count: int) -> None:
        self.done += count
        if self.done - self._shown >= _PROGRESS_STEP:
            self._shown = self.done
            self.callback(self.phase, self.done, max(self.total, self.done))

    def finish(self) -> None:
        self.callback(self.phase, self.done, max(self.total, self.done))


@dataclass(frozen=True)
class Taking:
    """What the file phase needs to know of the backup being made."""

    config: Config
    data_dir: Path  # resolved
    config_file: Path | None
    name: str  # of the archive being written
    destination: Path
    parent: Manifest | None  # an incremental backup's parent
    adopt_before_ns: int  # files older than this were on disk before the snapshot began


class FilePhase:
    """Step 2 (blocking, in one thread): walk, then store or take over each file."""

    def __init__(self, taking: Taking, writer: FastArchiveWriter, view: IndexView, progress: Progress) -> None:
        self.taking = taking
        self.data_dir = taking.data_dir
        self.root = f"{taking.data_dir}/"
        self.config = taking.config
        self.progress = progress
        self.writer = writer
        self.view = view
        with bulk_allocation():
            self.reuse: dict[Identity, FileEntry] = reusable_entries(taking.parent.files) if taking.parent else {}
        self.entries: list[FileEntry] = []
        self.outcome = FilesOutcome()
        self.notes: Counter[str] = Counter()

    def run(self) -> None:
        with bulk_allocation():  # a record per file; the collector would walk them all, again and again
            self._run()

    def _run(self) -> None:
        walked = walk(self.data_dir, self._excluded())
        self.notes["not_regular_skipped"] += walked.not_regular
        self.progress.start("files", self._expected_bytes(walked.files))
        spooled: dict[str, dict[str, SourceFile]] = {}
        for source in walked.files:
            if source.kind == SPOOL:
                spooled.setdefault(source.base, {})[source.rel[source.rel.rindex("."):]] = source
            else:
                self.take(source)
        self._retry_missing()
        for queue_id, pair in spooled.items():
            self._take_spooled(queue_id, pair)
        self.progress.finish()

    def _expected_bytes(self, files: list[SourceFile]) -> int:
        """For the progress bar. An incremental backup needs every file's size anyway (identities);
        a full one counts the messages' sizes from the index instead of a stat of each."""
        if self.reuse:
            return sum(f.size for f in files if self._previous(f) is None and f.load_stat(self.root))
        indexed = self.view.indexed_bytes()
        return indexed + sum(f.size for f in files if f.kind != MESSAGE and f.load_stat(self.root))

    def _excluded(self) -> list[str]:
        inside = [relative_inside(self.taking.destination, self.data_dir), DEFAULT_DESTINATION_NAME]
        database = sqlite_path(self.config)
        if database is not None:
            rel = relative_inside(database, self.data_dir)
            inside += [rel] + [f"{rel}{suffix}" for suffix in ("-wal", "-shm", "-journal")] if rel else []
        if self.config.logging.file is not None:
            inside.append(relative_inside(self.config.logging.file, self.data_dir))
        return [rel for rel in inside if rel]

    def take(self, source: SourceFile) -> None:
        if source.kind == MESSAGE:
            self._take_message(source)
        else:
            self.store(source)

    def _take_spooled(self, queue_id: str, pair: dict[str, SourceFile]) -> None:
        """The message, then its envelope only if the message was stored: an envelope without its
        message (or without its queue entry) would be a spool entry the restored queue lacks."""
        if queue_id not in self.view.queue_ids:
            self.notes["unqueued_skipped"] += len(pair)  # spooled after the snapshot: the next backup has it
            return
        stored = self.outcome.spool.setdefault(queue_id, set())
        for suffix in (".eml", ".json"):
            if suffix not in pair or not self.store(pair[suffix]):
                return
            stored.add(suffix)

    def _take_message(self, source: SourceFile) -> None:
        folder_id = self.view.folder_of(source.folder)
        if folder_id is None:
            self.notes["unindexed_skipped"] += 1
            return
        if self.outcome.has(folder_id, source.base):
            return  # met in new/ and again in cur/ (moved by a sync meanwhile)
        known = self.view.knows(folder_id, source.base)
        if not known and (not source.load_stat(self.root) or source.mtime_ns >= self.taking.adopt_before_ns):
            self.notes["unindexed_skipped"] += 1  # delivered after the snapshot: the next backup has it
            return
        if not self.store(source):
            return
        self.outcome.wrote(folder_id, source.base)
        if not known:
            self.outcome.adopted.append(self._adopted(folder_id, source))

    def _adopted(self, folder_id: int, source: SourceFile) -> Adopted:
        try:
            size = served_size(Path(self.root + source.rel))
        except FileNotFoundError:
            size = source.size
        flags = " ".join(sorted(split_name(Path(source.rel).name)[1]))
        return Adopted(folder_id, source.base, flags, source.in_new, source.mtime_ns // 1_000_000_000, size)

    def store(self, source: SourceFile) -> bool:
        """Store (or take over) one file; False when it vanished before it could be read."""
        if self.reuse:
            previous = self._previous(source)
            if previous is not None:
                self.entries.append(previous if (previous.path, previous.mode, previous.mtime_ns) == (
                    source.member, source.mode, source.mtime_ns) else FileEntry(
                    source.member, source.size, previous.sha256, source.mode, source.mtime_ns, previous.archive,
                    previous.member))  # unchanged: the parent's entry itself
                return True
        entry = self._add(source.member, self.root + source.rel, missing_ok=True)
        if entry is None:
            return False
        self.entries.append(entry)
        return True

    def _previous(self, source: SourceFile) -> FileEntry | None:
        """The parent's entry of a file with the same identity, looked up once."""
        if not source.compared:
            source.previous = self._lookup(source)
            source.compared = True
        return source.previous

    def _lookup(self, source: SourceFile) -> FileEntry | None:
        """A message file named with its size (``,S=<size>``, as hardmail and Dovecot name them)
        is found without a ``stat``: its content never changes, so its mode and time are the
        parent's. Any other file is compared by ``lstat``."""
        if source.rel in ALWAYS_STORED:
            return None
        if source.kind == MESSAGE and source.size < 0 and (named := named_size(source.base)) is not None:
            found = self.reuse.get(("m", FILES_PREFIX + source.folder, source.base, named))
            if found is not None:
                source.size, source.mode, source.mtime_ns = found.size, found.mode, found.mtime_ns
                return found
        if not source.load_stat(self.root):
            return None
        return self.reuse.get(source.identity())

    def _add(self, member: str, path: Path | str, missing_ok: bool = False) -> FileEntry | None:
        try:
            size, sha256, mode, mtime_ns = self.writer.add_file(member, path, self.progress.add)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise BackupError(f"{path} does not exist",
                              "fix the path in the configuration, or create the file") from None
        except PermissionError:
            raise BackupError(f"cannot read {path}: permission denied",
                              "run the backup as the user that owns the data directory") from None
        except ArchiveError as exc:
            raise BackupError(str(exc), "run the backup again") from None
        return FileEntry(member, size, sha256, mode, mtime_ns, self.taking.name, member)

    def _retry_missing(self) -> None:
        """Look once more for indexed messages not met (renamed while their directory was listed)."""
        for folder_id, gone in missing_messages(self.view, self.outcome).items():
            for source in folder_messages(self.data_dir, self.view.folders[folder_id].directory):
                if source.base in gone and not self.outcome.has(folder_id, source.base) and self.store(source):
                    self.outcome.wrote(folder_id, source.base)

    def add_config_and_external(self) -> list[FileEntry]:
        added = []
        if self.taking.config_file is not None:
            path = Path(self.taking.config_file).resolve()
            added.append(self._add(f"config/{path.name}", path))
        for member, path in external_files(self.config):
            added.append(self._add(member, path))
        return [entry for entry in added if entry is not None]


def sqlite_path(config: Config) -> Path | None:
    """The SQLite database file of ``config`` (resolved), None for any other database."""
    database = sqlite_database_file(config.database_url)
    return database.resolve() if database is not None else None
