"""``MailboxStore``: the mailbox store's use-cases (folders, messages, flags, quota, re-indexing)
over Maildir++ files (:mod:`hardmail.mailbox.files`) and the SQL index (``Store.mailbox``).

Durability and crash order (a ``kill -9`` at any point; files are the truth, the index follows):

- append: write ``tmp/``, fsync, rename into ``cur/``, fsync ``cur/``, then commit the index. A
  crash before the commit leaves a file without an entry; the directory's mtime no longer matches
  the one in the index, so the next sync (or ``reconcile_all`` at start-up) indexes it.
- flag change: rename ``cur/X:2,OLD`` → ``cur/X:2,NEW``, fsync, commit. A crash in between leaves
  an entry whose flags differ from the file; the index keys messages by base name ``X``, so the
  next sync takes the flags from the file (the client never had an OK for them).
- expunge: unlink, fsync the directory, then commit the removal (and the tombstone). A crash in
  between leaves an entry without a file, which the next sync removes; the other order could leave
  a file without entry, which would come back as a new message.
- move: rename into the destination's ``cur/`` (new base name not needed: it is unique), fsync
  both, commit both folders in one transaction.

Own changes record the directories' new mtimes in the same commit only when the index still held
the mtimes seen just before the change (compare-and-set), so a change made behind our back is
never hidden by ours; every file change to a folder is made holding the folder's lock (an
``flock`` on ``<folder>/hardmail.lock`` plus an asyncio lock), so two hardmail processes never
interleave their changes in one folder. Residual window (as in Dovecot): a change made by another
program within the same directory-timestamp tick as one of ours is seen at the next re-index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from hardmail.core.clock import Clock
from hardmail.mailbox.notifier import ChangeNotifier
from hardmail.mailbox.types import (
    AppendResult,
    Changes,
    CopyResult,
    FolderInfo,
    FolderSnapshot,
    Quota,
    ReindexReport,
    StoreResult,
)
from hardmail.store.ports_mailbox import MailboxIndex

StoreMode = Literal["add", "remove", "set"]
SPECIAL_USE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


class MailboxStore:
    """One per process. ``quota_defaults``: (storage bytes, messages) for accounts without their
    own limits; None is unlimited."""

    def __init__(self, maildir_root: Path, index: MailboxIndex, hostname: str, clock: Clock, *,
                 notifier: ChangeNotifier | None = None,
                 quota_defaults: tuple[int | None, int | None] = (None, None)) -> None:
        raise NotImplementedError

    async def ensure_account(self, account: str) -> None:
        """INBOX and the special-use folders (subscribed) exist in the index and on disk."""
        raise NotImplementedError

    async def list_folders(self, account: str) -> list[FolderInfo]:
        """The account's folders (INBOX first, then by name), from the index."""
        raise NotImplementedError

    async def folder(self, account: str, name: str) -> FolderInfo | None:
        """One folder's info from the index (no directory scan); None when it does not exist."""
        raise NotImplementedError

    async def create_folder(self, account: str, name: str, special_use: str | None = None) -> FolderInfo:
        """Create (with missing parents, RFC 9051 6.3.4); FolderError "folder exists" / bad name."""
        raise NotImplementedError

    async def delete_folder(self, account: str, name: str) -> None:
        """Delete a folder with its messages. INBOX, unknown names, and folders with children
        (as Dovecot) raise FolderError."""
        raise NotImplementedError

    async def rename_folder(self, account: str, old: str, new: str) -> None:
        """Rename with children; renaming INBOX moves its messages to ``new`` (RFC 9051 6.3.6)."""
        raise NotImplementedError

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        raise NotImplementedError

    async def subscriptions(self, account: str) -> list[str]:
        raise NotImplementedError

    async def sync(self, account: str, name: str, *, claim_recent: bool = True) -> FolderSnapshot:
        """Pick up files changed behind our back (scans ``new/``/``cur/`` only when their mtimes
        changed), move ``new/`` files to ``cur/``, then snapshot. ``claim_recent``: this session
        takes the \\Recent messages (IMAP4rev1 SELECT). FolderError for an unknown folder."""
        raise NotImplementedError

    async def snapshot(self, account: str, name: str, *, claim_recent: bool = False) -> FolderSnapshot:
        """The folder from the index only (one message query, no directory access)."""
        raise NotImplementedError

    async def changes_since(self, account: str, name: str, modseq: int) -> Changes:
        """Messages changed and UIDs expunged after ``modseq`` (CONDSTORE/QRESYNC)."""
        raise NotImplementedError

    async def message_path(self, account: str, name: str, uid: int) -> Path | None:
        """The message's current file, or None (expunged, or gone behind our back)."""
        raise NotImplementedError

    async def read_message(self, account: str, name: str, uid: int) -> bytes | None:
        """The whole message file (read in a thread), or None."""
        raise NotImplementedError

    async def append(self, account: str, name: str, message: bytes, flags: Iterable[str] = (),
                     internaldate: datetime | None = None) -> AppendResult:
        """Store a message; durable when it returns. QuotaExceeded over quota, FolderError."""
        raise NotImplementedError

    async def store_flags(self, account: str, name: str, uids: Sequence[int], mode: StoreMode,
                          flags: Iterable[str], unchanged_since: int | None = None) -> StoreResult:
        """Change flags; ``changed`` lists the messages whose flags changed (with their new MODSEQ);
        messages whose MODSEQ is above ``unchanged_since`` are left alone and listed in
        ``failed_uids`` (RFC 7162 3.1.3). Unknown UIDs are ignored."""
        raise NotImplementedError

    async def expunge(self, account: str, name: str, uids: Sequence[int] | None = None) -> list[int]:
        """Remove \\Deleted messages (only those among ``uids`` when given: UID EXPUNGE, RFC 4315);
        returns the UIDs removed, ascending."""
        raise NotImplementedError

    async def copy(self, account: str, src: str, uids: Sequence[int], dest: str) -> CopyResult:
        """Copy (hard links where possible) with flags and keywords; QuotaExceeded."""
        raise NotImplementedError

    async def move(self, account: str, src: str, uids: Sequence[int], dest: str) -> CopyResult:
        """Move (RFC 6851): renames the files, both folders change in one transaction."""
        raise NotImplementedError

    async def deliver_indexed(self, account: str, folder: str, paths: Sequence[Path]) -> list[int]:
        """Index files local delivery just put in ``new/`` of ``folder`` (created when missing);
        returns their UIDs in order; a file already indexed keeps its UID (idempotent)."""
        raise NotImplementedError

    async def quota(self, account: str) -> Quota:
        raise NotImplementedError

    async def set_quota(self, account: str, storage_bytes: int | None, messages: int | None) -> None:
        """Set the account's own limits (None: unlimited)."""
        raise NotImplementedError

    async def reindex(self, account: str, name: str | None = None) -> ReindexReport:
        """Full scan of one folder (or all, including folder directories the index does not know),
        keeping existing UIDs; recounts the usage."""
        raise NotImplementedError

    async def reconcile_all(self) -> int:
        """Start-up: sync every folder whose directories changed; returns how many were synced."""
        raise NotImplementedError
