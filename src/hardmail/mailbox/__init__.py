"""The mailbox store: Maildir++ folders on disk plus their index in the SQL store, shared by local
delivery, IMAP, POP3 and the CLI (see :mod:`hardmail.mailbox.service` for the durability rules,
:mod:`hardmail.mailbox.names` for folder names)."""

from hardmail.mailbox.names import mutf7_decode, mutf7_encode
from hardmail.mailbox.notifier import ChangeNotifier, Subscription
from hardmail.mailbox.service import SPECIAL_USE_DEFAULTS, MailboxStore
from hardmail.mailbox.types import (
    AppendResult,
    Changes,
    CopyResult,
    FolderError,
    FolderInfo,
    FolderSnapshot,
    MessageRecord,
    Quota,
    QuotaExceeded,
    ReindexReport,
    StoreResult,
)

__all__ = [
    "SPECIAL_USE_DEFAULTS", "AppendResult", "ChangeNotifier", "Changes", "CopyResult", "FolderError",
    "FolderInfo", "FolderSnapshot", "MailboxStore", "MessageRecord", "Quota", "QuotaExceeded",
    "ReindexReport", "StoreResult", "Subscription", "mutf7_decode", "mutf7_encode",
]
