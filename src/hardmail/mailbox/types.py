"""The records and errors of the mailbox store's public API (``hardmail.mailbox``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hardmail.store.ports_mailbox import MessageRecord

__all__ = [
    "AppendResult", "Changes", "CopyResult", "FolderError", "FolderInfo", "FolderSnapshot",
    "MessageRecord", "Quota", "QuotaExceeded", "ReindexReport", "RestoredMessage", "StoreResult",
]


class FolderError(ValueError):
    """A folder operation that cannot be done; the text is safe to show to a client
    ("no such folder", "folder exists", ...)."""


class QuotaExceeded(FolderError):
    """The change would take the account over its storage or message limit."""


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str  # IMAP name in UTF-8, "/" as delimiter; "INBOX" for the inbox
    special_use: str | None  # "\\Sent", "\\Drafts", ... (RFC 6154)
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    size: int
    deleted: int
    has_children: bool  # RFC 3348


@dataclass(frozen=True, slots=True)
class FolderSnapshot:
    info: FolderInfo
    messages: list[MessageRecord]  # UID order
    recent_uids: frozenset[int] = frozenset()  # IMAP4rev1 \Recent: given to this session only


@dataclass(frozen=True, slots=True)
class Changes:
    highestmodseq: int
    changed: list[MessageRecord]  # MODSEQ above the one asked for, UID order
    vanished: list[int]  # expunged UIDs (RFC 7162 3.2.5.1 VANISHED (EARLIER))


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class StoreResult:
    changed: list[MessageRecord]
    failed_uids: list[int] = field(default_factory=list)  # RFC 7162 3.1.3 UNCHANGEDSINCE


@dataclass(frozen=True, slots=True)
class CopyResult:
    uidvalidity: int  # of the destination
    pairs: list[tuple[int, int]]  # (source UID, destination UID), RFC 4315 COPYUID


@dataclass(frozen=True, slots=True)
class Quota:
    storage_used: int
    storage_limit: int | None
    messages_used: int
    messages_limit: int | None


@dataclass(frozen=True, slots=True)
class ReindexReport:
    folders: int = 0
    added: int = 0  # files without an index entry, now indexed with new UIDs
    removed: int = 0  # index entries without a file, now expunged
    renamed: int = 0  # files whose flags were changed behind our back (flags taken from the file)


@dataclass(frozen=True, slots=True)
class RestoredMessage:
    """A message a restore puts back (``MailboxStore.append_restored``): its bytes as archived,
    its flags and keywords, its INTERNALDATE, and the UID it had (kept when it cannot collide)."""

    data: bytes = field(repr=False)
    flags: frozenset[str]
    internaldate: datetime
    uid: int | None = None
