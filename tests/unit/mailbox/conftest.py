"""Fixtures of the mailbox store tests: an SQLite store and a MailboxStore on a Maildir root in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.store import open_store
from unit.mailbox.mailbox_helpers import Env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}"
    store = await open_store(url)
    await store.migrate()
    root = tmp_path / "mail"
    mailboxes = MailboxStore(root, store.mailbox, "mx.example.org", SystemClock())
    try:
        yield Env(store, mailboxes, root, url)
    finally:
        await store.close()
