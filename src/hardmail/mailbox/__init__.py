"""The mailbox store: Maildir++ folders on disk plus their index in the SQL store, shared by local
delivery, IMAP, POP3 and the CLI (see :mod:`hardmail.mailbox.service` for the durability rules,
:mod:`hardmail.mailbox.names` for folder names).

The store and the notifier are imported on first use, so that importing the pure parts (records,
errors, :func:`mutf7_encode`/:func:`mutf7_decode`) pulls in no asyncio or file code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hardmail.mailbox.names import mutf7_decode, mutf7_encode
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

if TYPE_CHECKING:
    from hardmail.mailbox.notifier import ChangeNotifier, Subscription
    from hardmail.mailbox.service import SPECIAL_USE_DEFAULTS, MailboxStore

_LAZY = {
    "ChangeNotifier": "hardmail.mailbox.notifier", "Subscription": "hardmail.mailbox.notifier",
    "MailboxStore": "hardmail.mailbox.service", "SPECIAL_USE_DEFAULTS": "hardmail.mailbox.service",
}

__all__ = [
    "SPECIAL_USE_DEFAULTS", "AppendResult", "ChangeNotifier", "Changes", "CopyResult", "FolderError",
    "FolderInfo", "FolderSnapshot", "MailboxStore", "MessageRecord", "Quota", "QuotaExceeded",
    "ReindexReport", "StoreResult", "Subscription", "mutf7_decode", "mutf7_encode",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
