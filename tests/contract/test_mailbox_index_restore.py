"""Contract: what a selective restore asks of the MailboxIndex (a folder re-created with its
archived UIDVALIDITY, messages keeping their archived UIDs only where they cannot collide, UIDNEXT
and MODSEQ floors), on every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete

from hardmail.store.ports import Store
from hardmail.store.ports_mailbox import DirStamp, FolderChange, MailboxIndex, NewMessage
from hardmail.store.sql.tables_mailbox import (
    mailbox_accounts,
    mailbox_changes,
    mailbox_folders,
    mailbox_messages,
    mailbox_subscriptions,
    mailbox_vanished,
)

ACCOUNT = "alice@example.org"
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
STAMP = DirStamp(0, 0)


@pytest.fixture
async def index(store: Store) -> AsyncIterator[MailboxIndex]:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table in (mailbox_changes, mailbox_subscriptions, mailbox_vanished, mailbox_messages,
                      mailbox_folders, mailbox_accounts):
            await conn.execute(delete(table))
    yield store.mailbox


def _msg(name: str, uid: int | None = None) -> NewMessage:
    return NewMessage(name, frozenset(), WHEN, 10, uid=uid)


async def test_a_restored_folder_gets_its_archived_uidvalidity_back(index: MailboxIndex) -> None:
    old = await index.create_folder(ACCOUNT, "Work", None, 1_600_000_000, STAMP)
    await index.create_folder(ACCOUNT, "Later", None, 1_700_000_000, STAMP)
    await index.delete_folder(old.id)
    again = await index.create_folder(ACCOUNT, "Work", None, 1_600_000_000, STAMP, reuse_uidvalidity=True)
    assert again.uidvalidity == 1_600_000_000
    fresh = await index.create_folder(ACCOUNT, "Newer", None, 1_500_000_000, STAMP)
    assert fresh.uidvalidity > 1_700_000_000  # the account's last value did not go back


async def test_a_uidvalidity_held_by_a_live_folder_is_not_reused(index: MailboxIndex) -> None:
    live = await index.create_folder(ACCOUNT, "Work", None, 1_600_000_000, STAMP)
    other = await index.create_folder(ACCOUNT, "Copy", None, 1_600_000_000, STAMP, reuse_uidvalidity=True)
    assert other.uidvalidity != live.uidvalidity
    assert other.uidvalidity > live.uidvalidity


async def test_asked_uids_are_kept_at_or_above_uidnext_only(index: MailboxIndex) -> None:
    folder = (await index.create_folder(ACCOUNT, "INBOX", None, 1_700_000_000, STAMP)).id
    [first] = await index.apply([(folder, FolderChange(added=[_msg("a", 5), _msg("b", 5), _msg("c", 9)]))])
    assert first.uids == [5, 6, 9]  # 5 was taken by then: b gets the next one
    assert first.folder.uidnext == 10
    [second] = await index.apply([(folder, FolderChange(added=[_msg("d", 3), _msg("e")]))])
    assert second.uids == [10, 11]  # below UIDNEXT: clients may have seen 3, a new UID instead


async def test_uidnext_and_modseq_floors(index: MailboxIndex) -> None:
    folder = (await index.create_folder(ACCOUNT, "INBOX", None, 1_700_000_000, STAMP)).id
    [result] = await index.apply([(folder, FolderChange(added=[_msg("a", 2)], uidnext_at_least=40,
                                                        modseq_at_least=77))])
    assert result.uids == [2]
    assert (result.folder.uidnext, result.folder.highestmodseq, result.modseq) == (40, 77, 77)
    [later] = await index.apply([(folder, FolderChange(added=[_msg("b")], uidnext_at_least=3, modseq_at_least=5))])
    assert later.uids == [40]
    assert later.modseq == 78  # a floor below never lowers anything


async def test_the_modseq_floor_holds_for_a_folder_without_messages(index: MailboxIndex) -> None:
    folder = (await index.create_folder(ACCOUNT, "Empty", None, 1_700_000_000, STAMP)).id
    [result] = await index.apply([(folder, FolderChange(uidnext_at_least=12, modseq_at_least=30))])
    assert not result.changed
    assert (result.folder.uidnext, result.folder.highestmodseq) == (12, 30)
    [later] = await index.apply([(folder, FolderChange(added=[_msg("a")]))])
    assert (later.uids, later.modseq) == ([12], 31)
