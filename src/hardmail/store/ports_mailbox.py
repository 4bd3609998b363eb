"""Storage interface of the mailbox index: folders, messages (UID, flags, MODSEQ), tombstones of
expunged UIDs, per-account usage and limits, subscriptions, and the change feed.

Only :mod:`hardmail.mailbox` uses it; the Maildir files are the mailbox store's business. Every
write goes through :meth:`MailboxIndex.apply`, one transaction per call, which locks the folder
rows it touches first, so that UID and MODSEQ allocation is atomic across processes (SQLite: one
writer at a time; PostgreSQL: the folder row is locked by the first UPDATE).

Flags are IMAP flags as given (``\\Seen``, keywords like ``$Forwarded``); ``\\Recent`` is never
stored. Messages are keyed by their Maildir base name (the part of the file name before ``:2,``)
as well as by UID, so that a file renamed behind the server's back is recognised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from hardmail.store.ports import StoreError


class OverQuota(StoreError):
    """An apply with a quota check would take the account over its limit; nothing was written."""


@dataclass(frozen=True, slots=True)
class MessageRecord:
    uid: int
    modseq: int
    flags: frozenset[str]  # "\\Seen", "\\Answered", ..., and keywords as given ("$Forwarded")
    internaldate: datetime  # aware, UTC
    size: int
    name: str  # the Maildir base name (before ":2,")


@dataclass(frozen=True, slots=True)
class DirStamp:
    """The modification times (ns) of a folder's ``new/`` and ``cur/`` as the index last saw them."""

    new_mtime_ns: int
    cur_mtime_ns: int


@dataclass(frozen=True, slots=True)
class FolderRow:
    id: int
    account: str
    name: str  # IMAP name, UTF-8, "/" as delimiter; "INBOX" for the inbox
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    size: int
    unseen: int
    deleted: int
    first_recent_uid: int  # messages from this UID on are \Recent for the next session
    stamp: DirStamp


@dataclass(frozen=True, slots=True)
class SyncEntry:
    """What a directory scan compares with a file: an indexed message and where its file is."""

    uid: int
    name: str
    flags: frozenset[str]
    modseq: int
    size: int
    in_new: bool


@dataclass(frozen=True, slots=True)
class NewMessage:
    name: str
    flags: frozenset[str]
    internaldate: datetime
    size: int
    in_new: bool = False
    uid: int | None = None  # a UID asked for (a restore): given when at or above UIDNEXT, else a new one


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    uid: int
    flags: frozenset[str]
    in_new: bool | None = None  # None: where the file is did not change


@dataclass(frozen=True, slots=True)
class FolderChange:
    """One folder's part of an :meth:`MailboxIndex.apply`.

    ``stamp_before``/``stamp_after``: each of the folder's two directory times (new/, cur/) is set
    to ``stamp_after``'s only when the index still holds ``stamp_before``'s (nobody changed that
    directory in between without the index knowing); ``force_stamp`` sets both in any case (after
    a scan).
    """

    added: Sequence[NewMessage] = ()
    updated: Sequence[FlagUpdate] = ()
    removed: Sequence[int] = ()
    stamp_before: DirStamp | None = None
    stamp_after: DirStamp | None = None
    force_stamp: bool = False
    check_quota: bool = False  # raise OverQuota when ``added`` takes the account over its limits
    moved_in_new: Sequence[str] = field(default=())  # base names now in cur/ (no flag change)
    # a restore re-creating a folder as it was: UIDNEXT and the change's MODSEQ (HIGHESTMODSEQ, when
    # nothing else changes) at least these, so that no UID or MODSEQ the archived folder had handed
    # out to clients is handed out again
    uidnext_at_least: int = 0
    modseq_at_least: int = 0


@dataclass(frozen=True, slots=True)
class ApplyResult:
    uids: list[int]  # the UIDs given to ``added``, in order (an already indexed name keeps its UID)
    modseq: int  # the MODSEQ of this change (the folder's HIGHESTMODSEQ after it)
    folder: FolderRow
    changed: bool = True  # False: nothing changed (no new MODSEQ, no change-feed row)


@dataclass(frozen=True, slots=True)
class AccountUsage:
    storage_used: int
    messages_used: int
    custom_limits: bool  # False: the server's defaults apply
    storage_limit: int | None  # with custom_limits; None is unlimited
    messages_limit: int | None


@dataclass(frozen=True, slots=True)
class MailboxChange:
    id: int
    account: str
    folder: str
    at: datetime


class MailboxIndex(Protocol):
    async def create_folder(self, account: str, name: str, special_use: str | None, uidvalidity: int,
                            stamp: DirStamp, *, reuse_uidvalidity: bool = False) -> FolderRow:
        """Raises AlreadyExists. UIDVALIDITY is ``uidvalidity`` or, when the account already used a
        value that high, the next unused one (a re-created name never repeats a UIDVALIDITY).
        ``reuse_uidvalidity`` (a restore re-creating a folder with its archived UIDs): ``uidvalidity``
        as given unless a folder of the account holds it now."""
        ...

    async def get_folder(self, account: str, name: str) -> FolderRow | None: ...

    async def list_folders(self, account: str) -> list[FolderRow]:
        """The account's folders ordered by name."""
        ...

    async def all_folders(self, after_id: int = 0, limit: int = 1000) -> list[FolderRow]:
        """Every account's folders with an id above ``after_id``, by id (for start-up reconciling)."""
        ...

    async def delete_folder(self, folder_id: int) -> None:
        """Remove the folder with its messages and tombstones; the usage drops by its contents."""
        ...

    async def rename_folders(self, account: str, renames: Sequence[tuple[str, str]]) -> None:
        """Rename folders (a parent and its children at once); raises AlreadyExists or NotFound."""
        ...

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None: ...

    async def subscriptions(self, account: str) -> list[str]: ...

    async def snapshot(self, folder_id: int) -> tuple[FolderRow, list[MessageRecord]] | None:
        """The folder row and all its messages in UID order, read consistently (one message query)."""
        ...

    async def snapshot_since(self, folder_id: int, modseq: int
                             ) -> tuple[FolderRow, list[MessageRecord], list[int]] | None:
        """The folder row, the messages changed after ``modseq`` and the UIDs expunged after it, read
        consistently (for bringing a cached snapshot up to date)."""
        ...

    async def claim_recent(self, folder_id: int) -> tuple[int, int]:
        """Give the \\Recent messages to the caller: returns (first recent UID, UIDNEXT) and moves
        the first recent UID to UIDNEXT, so the UIDs in between are recent for this caller only."""
        ...

    async def sync_entries(self, folder_id: int, uids: Sequence[int] | None = None, *,
                           only_in_new: bool = False, only_deleted: bool = False) -> list[SyncEntry]:
        """Every message (or those of ``uids``; only those whose file is in new/; only those flagged
        \\Deleted) as a directory scan compares them, in UID order."""
        ...

    async def changes_since(self, folder_id: int, modseq: int) -> tuple[list[MessageRecord], list[int]]:
        """Messages with a MODSEQ above ``modseq``, and expunged UIDs whose tombstone is above it."""
        ...

    async def apply(self, changes: Sequence[tuple[int, FolderChange]],
                    quota_defaults: tuple[int | None, int | None] = (None, None)) -> list[ApplyResult]:
        """Apply each folder's change in one transaction (folders locked in id order); each changed
        folder gets one new MODSEQ and one change-feed row. Raises OverQuota (nothing written)."""
        ...

    async def usage(self, account: str) -> AccountUsage: ...

    async def set_limits(self, account: str, storage: int | None, messages: int | None, *,
                         custom: bool = True) -> None:
        """The account's own limits (None: unlimited); ``custom=False`` returns it to the defaults."""
        ...

    async def recount_usage(self, account: str) -> AccountUsage:
        """Recompute the usage from the messages (after a re-index)."""
        ...

    async def recount_folder(self, folder_id: int) -> FolderRow:
        """Recompute the folder's counters (messages, size, unseen, deleted) from its messages."""
        ...

    async def latest_change(self) -> int:
        """The id of the newest change-feed row, 0 when there is none."""
        ...

    async def changes_after(self, after_id: int, limit: int = 1000) -> list[MailboxChange]: ...

    async def prune_changes(self, before: datetime) -> int: ...
