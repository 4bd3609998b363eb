"""The database side of a backup: a consistent snapshot, what it knows (the mailbox index and the
queue, read once), and the corrections that make it agree with the files the archive holds.

Order (spec "Consistency while the server runs"): the snapshot is taken first; the files are
taken after it; then the copy is corrected: an index entry whose file vanished meanwhile (an
expunge, a move) is dropped, with a ``mailbox_vanished`` tombstone at a new HIGHESTMODSEQ so that
a QRESYNC client of the restored server learns of it (RFC 7162 3.2.10); a message file the index
did not know but that was on disk before the snapshot began (a delivery whose indexing failed
after its 250, or a message moved in from another folder during the backup) is added with the
next UID; the folder counters and the account's quota usage are recomputed for every folder that
changed; a queue entry whose spool files vanished (delivered meanwhile) is dropped.

SQLite: the online backup API (``sqlite3.Connection.backup``, all pages in one step, so one read
transaction) into a file of the backup's private work directory, switched to a rollback journal
so that it is one self-contained file; the corrections are applied to that copy with SQL.
PostgreSQL: :mod:`hardmail.ops.backup.snapshot_pg` (a REPEATABLE READ transaction exported as
JSON lines with these corrections, plus ``pg_dump``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from hardmail.core.bulk import bulk_allocation
from hardmail.core.diskfull import is_disk_full
from hardmail.delivery.maildir import MaildirStore
from hardmail.mailbox import names
from hardmail.ops.backup.catalog import BackupError
from hardmail.ops.backup.manifest import ARCHIVE_SUFFIX, DatabaseInfo, FileEntry
from hardmail.ops.backup.sources import MAIL_DIR
from hardmail.ops.backup.tarstream import FastArchiveWriter
from hardmail.store.sql.migrate import effective_revision

SEEN, DELETED = "\\Seen", "\\Deleted"
SQLITE_MEMBER = "database/hardmail.db"
_MAILBOX_TABLES = ("mailbox_folders", "mailbox_messages")
IndexedMessage = tuple[int, int, str]  # (uid, size, flags text)
# The copy is a scratch file of the work directory: what must be durable is the archive that
# stores it (fsync'd), so its own transactions need no fsync (they cost a few each).
_UNSYNCED = "PRAGMA synchronous=OFF"


@dataclass(slots=True)
class FolderState:
    """A folder row of the snapshot with its counters recomputed from its message rows."""

    id: int
    account: str
    directory: str  # relative to the data directory, e.g. mail/example.org/alice/.Sent
    uidnext: int
    highestmodseq: int
    messages: int = 0  # the counters are made by IndexView.counted, for the folders that need them
    size: int = 0
    unseen: int = 0
    deleted: int = 0
    counted: bool = False

    def count(self, size: int, flags: str, sign: int) -> None:
        words = flags.split()
        self.messages += sign
        self.size += sign * size
        self.unseen += sign * (SEEN not in words)
        self.deleted += sign * (DELETED in words)

    def counters(self) -> dict[str, int]:
        return {"messages": self.messages, "size": self.size, "unseen": self.unseen, "deleted": self.deleted,
                "uidnext": self.uidnext, "highestmodseq": self.highestmodseq}


@dataclass
class IndexView:
    """What the snapshot knows, read once: folders by directory, their messages by base name, and
    the queued messages' ids."""

    folders: dict[int, FolderState] = field(default_factory=dict)
    by_directory: dict[str, int] = field(default_factory=dict)
    messages: dict[int, dict[str, IndexedMessage]] = field(default_factory=dict)
    queue_ids: set[str] = field(default_factory=set)
    schema_revision: str | None = None
    _accounts: dict[str, str | None] = field(default_factory=dict)
    _flags: dict[str, str] = field(default_factory=dict)

    def add_folder(self, folder_id: int, account: str, name: str, uidnext: int, highestmodseq: int) -> None:
        account_dir = self._account_dir(account)
        if account_dir is None:
            return  # an address that cannot be a directory: nothing of it is on disk
        directory = account_dir if name == names.INBOX else f"{account_dir}/{names.dirname(name)}"
        self.folders[folder_id] = FolderState(folder_id, account, directory, uidnext, highestmodseq)
        self.by_directory[directory] = folder_id
        self.messages[folder_id] = {}

    def _account_dir(self, account: str) -> str | None:
        if account not in self._accounts:
            try:
                self._accounts[account] = MaildirStore(Path(MAIL_DIR), "backup").mailbox_path(account).as_posix()
            except ValueError:
                self._accounts[account] = None
        return self._accounts[account]

    def add_message(self, folder_id: int, uid: int, name: str, flags: str, size: int) -> None:
        folder = self.folders.get(folder_id)
        if folder is None:
            return
        flags = self._flags.setdefault(flags, flags)  # most messages share a few flag sets
        self.messages[folder_id][name] = (uid, size, flags)

    def add_messages(self, rows: Iterable[tuple[int, int, str, str, int]]) -> None:
        """:meth:`add_message` of each row (one loop, no call per row)."""
        messages, interned = self.messages, self._flags
        for folder_id, uid, name, flags, size in rows:
            known = messages.get(folder_id)
            if known is not None:
                known[name] = (uid, size, interned.setdefault(flags, flags))

    def counted(self, folder_id: int) -> FolderState:
        """The folder with its counters made from its message rows (once; most folders of a
        backup never need them: only those the corrections change, and their accounts')."""
        folder = self.folders[folder_id]
        if not folder.counted:
            folder.counted = True
            for _uid, size, flags in self.messages[folder_id].values():
                folder.count(size, flags, +1)
        return folder

    def indexed_bytes(self) -> int:
        """The sizes of all indexed messages."""
        return sum(size for messages in self.messages.values() for _uid, size, _flags in messages.values())

    def folder_of(self, directory: str) -> int | None:
        return self.by_directory.get(directory)

    def knows(self, folder_id: int, base: str) -> bool:
        return base in self.messages[folder_id]


@dataclass(frozen=True, slots=True)
class Adopted:
    """A message file on disk before the snapshot began that the snapshot's index did not know."""

    folder_id: int
    base: str
    flags: str  # space-separated, sorted (the system flags of its name)
    in_new: bool
    internaldate: int  # seconds (its mtime, as the mailbox store takes it)
    size: int  # served size (CRLF form)


@dataclass
class FilesOutcome:
    """What the file phase stored: base names per folder, adopted files, spool files per queue id."""

    written: dict[int, set[str]] = field(default_factory=dict)
    adopted: list[Adopted] = field(default_factory=list)
    spool: dict[str, set[str]] = field(default_factory=dict)  # queue id → suffixes (.eml, .json)

    def wrote(self, folder_id: int, base: str) -> None:
        self.written.setdefault(folder_id, set()).add(base)

    def has(self, folder_id: int, base: str) -> bool:
        return base in self.written.get(folder_id, ())


@dataclass
class Corrections:
    """The changes that make the snapshot agree with the files of the archive."""

    dropped: dict[int, list[int]] = field(default_factory=dict)  # folder id → UIDs whose file vanished
    added: dict[int, list[dict[str, object]]] = field(default_factory=dict)  # folder id → new message rows
    folders: dict[int, dict[str, int]] = field(default_factory=dict)  # folder id → recomputed columns
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)  # account → recomputed usage
    tombstones: list[dict[str, int]] = field(default_factory=list)  # new mailbox_vanished rows
    queue_dropped: set[str] = field(default_factory=set)

    def dropped_keys(self) -> set[tuple[int, int]]:
        return {(folder_id, uid) for folder_id, uids in self.dropped.items() for uid in uids}

    def notes(self) -> dict[str, int]:
        return {"vanished_dropped": sum(len(uids) for uids in self.dropped.values()),
                "unindexed_adopted": sum(len(rows) for rows in self.added.values()),
                "queue_dropped": len(self.queue_dropped)}


def missing_messages(view: IndexView, outcome: FilesOutcome) -> dict[int, set[str]]:
    """Folder id → base names the index has but the archive does not (yet)."""
    missing = {}
    for folder_id, known in view.messages.items():
        written = outcome.written.get(folder_id, set())
        if len(written) < len(known) or not written.issuperset(known):
            gone = set(known) - written
            if gone:
                missing[folder_id] = gone
    return missing


def compute_corrections(view: IndexView, outcome: FilesOutcome) -> Corrections:
    corrections = Corrections()
    adopted: dict[int, list[Adopted]] = {}
    for item in outcome.adopted:
        adopted.setdefault(item.folder_id, []).append(item)
    for folder_id, gone in missing_messages(view, outcome).items():
        _drop(view, corrections, folder_id, gone)
    for folder_id, items in adopted.items():
        _adopt(view, corrections, folder_id, items)
    for folder_id in corrections.folders:
        corrections.folders[folder_id] = view.folders[folder_id].counters()
    _recount_accounts(view, corrections)
    corrections.queue_dropped = {qid for qid in view.queue_ids
                                 if not {".eml", ".json"} <= outcome.spool.get(qid, set())}
    return corrections


def _bump(view: IndexView, corrections: Corrections, folder_id: int) -> int:
    """One new MODSEQ per changed folder (RFC 7162 3.1.1: every change gets a higher one)."""
    folder = view.counted(folder_id)
    if folder_id not in corrections.folders:
        folder.highestmodseq += 1
        corrections.folders[folder_id] = {}
    return folder.highestmodseq


def _drop(view: IndexView, corrections: Corrections, folder_id: int, gone: Iterable[str]) -> None:
    modseq = _bump(view, corrections, folder_id)
    known, folder = view.messages[folder_id], view.counted(folder_id)
    uids = []
    for base in sorted(gone):
        uid, size, flags = known[base]
        folder.count(size, flags, -1)
        uids.append(uid)
        corrections.tombstones.append({"folder_id": folder_id, "uid": uid, "modseq": modseq})
    corrections.dropped[folder_id] = uids


def _adopt(view: IndexView, corrections: Corrections, folder_id: int, items: list[Adopted]) -> None:
    modseq = _bump(view, corrections, folder_id)
    folder = view.counted(folder_id)
    rows = corrections.added.setdefault(folder_id, [])
    for item in sorted(items, key=lambda i: (i.internaldate, i.base)):
        uid = folder.uidnext
        folder.uidnext += 1
        folder.count(item.size, item.flags, +1)
        rows.append({"folder_id": folder_id, "uid": uid, "name": item.base, "flags": item.flags, "modseq": modseq,
                     "internaldate": item.internaldate, "size": item.size, "in_new": item.in_new})


def _recount_accounts(view: IndexView, corrections: Corrections) -> None:
    changed = {view.folders[folder_id].account for folder_id in corrections.folders}
    for account in changed:
        mine = [view.counted(f.id) for f in view.folders.values() if f.account == account]
        corrections.accounts[account] = {"storage_used": sum(f.size for f in mine),
                                         "messages_used": sum(f.messages for f in mine)}


# --- SQLite ----------------------------------------------------------------------------------

def sqlite_snapshot(database: Path, copy: Path) -> None:
    """Copy ``database`` (in use by a running server) into ``copy`` with the online backup API:
    every page in one step, so the copy is the database as of one moment. Blocking."""
    try:
        source = sqlite3.connect(f"file:{quote(str(database))}?mode=ro", uri=True, timeout=30)
    except sqlite3.OperationalError as exc:
        raise BackupError(f"cannot open the database {database}: {exc}",
                          "check that the data directory is initialised and readable by this user") from None
    try:
        target = sqlite3.connect(copy)
        try:
            target.execute(_UNSYNCED)
            source.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            target.close()
    except sqlite3.DatabaseError as exc:
        if is_disk_full(exc, copy.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(copy.parent)) from None
        raise BackupError(f"cannot copy the database {database}: {exc}",
                          "check the database with `hardmail status`; run the backup again") from None
    finally:
        source.close()


def read_sqlite_view(copy: Path) -> IndexView:
    """The index and queue of an SQLite snapshot, read once. Blocking."""
    with bulk_allocation():
        return _read_sqlite_view(copy)


def _read_sqlite_view(copy: Path) -> IndexView:
    view = IndexView()
    connection = sqlite3.connect(copy)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" in tables:
            revisions = sorted(row[0] for row in connection.execute("SELECT version_num FROM alembic_version"))
            view.schema_revision = effective_revision(revisions)
        if all(table in tables for table in _MAILBOX_TABLES):
            for row in connection.execute("SELECT id, account, name, uidnext, highestmodseq FROM mailbox_folders"):
                view.add_folder(*row)
            view.add_messages(connection.execute("SELECT folder_id, uid, name, flags, size FROM mailbox_messages"))
        if "queue_messages" in tables:
            view.queue_ids = {row[0] for row in connection.execute("SELECT queue_id FROM queue_messages")}
    finally:
        connection.close()
    return view


def apply_sqlite_corrections(copy: Path, corrections: Corrections) -> None:
    """Apply ``corrections`` to the SQLite copy in one transaction. Blocking."""
    connection = sqlite3.connect(copy, isolation_level=None)
    try:
        connection.execute(_UNSYNCED)
        connection.execute("BEGIN")
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "mailbox_messages" in tables:  # a database at an older schema revision (before an upgrade) has none
            _sqlite_mailbox(connection, corrections)
        for queue_id in sorted(corrections.queue_dropped):
            connection.execute("DELETE FROM queue_recipients WHERE queue_id = ?", (queue_id,))
            connection.execute("DELETE FROM queue_messages WHERE queue_id = ?", (queue_id,))
        connection.execute("COMMIT")
    finally:
        connection.close()


def _sqlite_mailbox(connection: sqlite3.Connection, corrections: Corrections) -> None:
    connection.executemany("DELETE FROM mailbox_messages WHERE folder_id = ? AND uid = ?",
                           sorted(corrections.dropped_keys()))
    connection.executemany("INSERT OR REPLACE INTO mailbox_vanished (folder_id, uid, modseq) "
                           "VALUES (:folder_id, :uid, :modseq)", corrections.tombstones)
    connection.executemany(
        "INSERT INTO mailbox_messages (folder_id, uid, name, flags, modseq, internaldate, size, in_new) "
        "VALUES (:folder_id, :uid, :name, :flags, :modseq, :internaldate, :size, :in_new)",
        [row for rows in corrections.added.values() for row in rows])
    connection.executemany(
        "UPDATE mailbox_folders SET messages = :messages, size = :size, unseen = :unseen, deleted = :deleted, "
        "uidnext = :uidnext, highestmodseq = :highestmodseq WHERE id = :id",
        [{**values, "id": folder_id} for folder_id, values in corrections.folders.items()])
    connection.executemany(
        "UPDATE mailbox_accounts SET storage_used = :storage_used, messages_used = :messages_used "
        "WHERE account = :account",
        [{**values, "account": account} for account, values in corrections.accounts.items()])


class SqliteSnapshot:
    """The SQLite side of a backup, as :mod:`hardmail.ops.backup.create` drives it:
    ``snapshot()``, ``read_view()``, ``start_dump()``, ``store()``, ``info()``, ``close()``."""

    def __init__(self, path: Path, work_dir: Path) -> None:
        self.path = path
        self.copy = work_dir / "hardmail.db"

    async def snapshot(self) -> None:
        if not self.path.is_file():
            raise BackupError(f"there is no database at {self.path}",
                              "check --data-dir / storage.url: the data directory is not initialised")
        os.close(os.open(self.copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # the copy is private
        await asyncio.to_thread(sqlite_snapshot, self.path, self.copy)

    async def read_view(self) -> IndexView:
        return await asyncio.to_thread(read_sqlite_view, self.copy)

    async def start_dump(self) -> None:
        return None

    async def store(self, writer: FastArchiveWriter, corrections: Corrections, notes: Counter[str]) -> list[FileEntry]:
        """Correct the copy, then store it as ``database/hardmail.db``."""
        await asyncio.to_thread(apply_sqlite_corrections, self.copy, corrections)
        return [await asyncio.to_thread(store_member, writer, SQLITE_MEMBER, self.copy)]

    def info(self) -> DatabaseInfo:
        return DatabaseInfo("sqlite", SQLITE_MEMBER)

    async def close(self) -> None:
        return None


def store_member(writer: FastArchiveWriter, member: str, path: Path) -> FileEntry:
    """Store a file of the backup's own making (the database copy) in the archive being written."""
    size, sha256, mode, mtime_ns = writer.add_file(member, path)
    archive = writer.path.name.removesuffix(ARCHIVE_SUFFIX)
    return FileEntry(member, size, sha256, mode, mtime_ns, archive, member)
