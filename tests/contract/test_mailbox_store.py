"""Contract: the MailboxStore tests of tests/unit/mailbox (messages, flags, folders, quota, sync,
re-index, notifier) once more on every backend, PostgreSQL included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.store.ports import Store
from hardmail.store.sql.tables_mailbox import (
    mailbox_accounts,
    mailbox_changes,
    mailbox_folders,
    mailbox_messages,
    mailbox_subscriptions,
    mailbox_vanished,
)
from unit.mailbox.mailbox_helpers import Env
from unit.mailbox.test_store import *  # noqa: F403 - the same tests, on this module's env
from unit.mailbox.test_sync import *  # noqa: F403


@pytest.fixture
async def env(store: Store, store_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table in (mailbox_changes, mailbox_subscriptions, mailbox_vanished, mailbox_messages,
                      mailbox_folders, mailbox_accounts):
            await conn.execute(delete(table))
    root = tmp_path / "mail"
    yield Env(store, MailboxStore(root, store.mailbox, "mx.example.org", SystemClock()), root, store_url)
