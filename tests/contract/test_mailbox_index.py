"""Contract: MailboxIndex (folders, UIDs, MODSEQ, tombstones, usage, change feed) on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete

from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_mailbox import (
    DirStamp,
    FlagUpdate,
    FolderChange,
    MailboxIndex,
    NewMessage,
    OverQuota,
)
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


def _msg(name: str, flags: frozenset[str] = frozenset(), size: int = 100) -> NewMessage:
    return NewMessage(name, flags, WHEN, size)


async def _folder(index: MailboxIndex, name: str = "INBOX") -> int:
    return (await index.create_folder(ACCOUNT, name, None, 1_700_000_000, STAMP)).id


async def test_a_new_folder_starts_empty(index: MailboxIndex) -> None:
    row = await index.create_folder(ACCOUNT, "Sent", "\\Sent", 1_700_000_000, STAMP)
    assert (row.name, row.special_use, row.uidvalidity, row.uidnext, row.messages) == (
        "Sent", "\\Sent", 1_700_000_000, 1, 0)
    assert row.highestmodseq >= 1
    assert await index.get_folder(ACCOUNT, "Sent") == row
    assert await index.get_folder(ACCOUNT, "sent") is None  # names are exact; INBOX is the store's business
    with pytest.raises(AlreadyExists):
        await index.create_folder(ACCOUNT, "Sent", None, 1_700_000_000, STAMP)


async def test_uidvalidity_never_repeats_for_a_recreated_name(index: MailboxIndex) -> None:
    first = await index.create_folder(ACCOUNT, "Work", None, 1_700_000_000, STAMP)
    await index.delete_folder(first.id)
    second = await index.create_folder(ACCOUNT, "Work", None, 1_700_000_000, STAMP)  # same second
    assert second.uidvalidity > first.uidvalidity
    other = await index.create_folder(ACCOUNT, "Other", None, 1_600_000_000, STAMP)  # clock went back
    assert other.uidvalidity > second.uidvalidity


async def test_added_messages_get_increasing_uids_and_counters(index: MailboxIndex) -> None:
    folder = await _folder(index)
    [result] = await index.apply([(folder, FolderChange(added=[
        _msg("a", frozenset({"\\Seen"})), _msg("b", frozenset({"\\Deleted", "$Work"}), 50)]))])
    assert result.uids == [1, 2]
    assert (result.folder.uidnext, result.folder.messages, result.folder.size, result.folder.unseen,
            result.folder.deleted) == (3, 2, 150, 1, 1)
    found = await index.snapshot(folder)
    assert found is not None
    row, messages = found
    assert [(m.uid, m.name, m.flags, m.internaldate, m.size) for m in messages] == [
        (1, "a", frozenset({"\\Seen"}), WHEN, 100), (2, "b", frozenset({"\\Deleted", "$Work"}), WHEN, 50)]
    assert {m.modseq for m in messages} == {row.highestmodseq}
    usage = await index.usage(ACCOUNT)
    assert (usage.storage_used, usage.messages_used) == (150, 2)


async def test_a_known_name_keeps_its_uid(index: MailboxIndex) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a")]))])
    [again] = await index.apply([(folder, FolderChange(added=[_msg("b"), _msg("a")]))])
    assert again.uids == [2, 1]
    assert again.folder.messages == 2


async def test_flag_changes_bump_modseq_and_expunges_leave_tombstones(index: MailboxIndex) -> None:
    folder = await _folder(index)
    [added] = await index.apply([(folder, FolderChange(added=[_msg("a"), _msg("b"), _msg("c")]))])
    [flagged] = await index.apply([(folder, FolderChange(updated=[FlagUpdate(2, frozenset({"\\Deleted"}))]))])
    assert flagged.modseq > added.modseq and flagged.folder.deleted == 1
    [same] = await index.apply([(folder, FolderChange(updated=[FlagUpdate(2, frozenset({"\\Deleted"}))]))])
    assert not same.changed and same.modseq == flagged.modseq
    [expunged] = await index.apply([(folder, FolderChange(removed=[2]))])
    assert expunged.modseq > flagged.modseq
    assert (expunged.folder.messages, expunged.folder.deleted, expunged.folder.uidnext) == (2, 0, 4)
    changed, vanished = await index.changes_since(folder, added.modseq)
    assert (changed, vanished) == ([], [2])
    changed, vanished = await index.changes_since(folder, 0)
    assert [m.uid for m in changed] == [1, 3] and vanished == [2]
    [more] = await index.apply([(folder, FolderChange(added=[_msg("d")]))])
    assert more.uids == [4]  # never reused


async def test_uids_are_unique_under_concurrent_writers(index: MailboxIndex, store_url: str) -> None:
    from hardmail.store import open_store

    folder = await _folder(index)
    other = await open_store(store_url)
    try:
        async def add(target: MailboxIndex, prefix: str) -> list[int]:
            uids = []
            for i in range(15):
                [result] = await target.apply([(folder, FolderChange(added=[_msg(f"{prefix}{i}")]))])
                uids += result.uids
            return uids

        first, second = await asyncio.gather(add(index, "x"), add(other.mailbox, "y"))
    finally:
        await other.close()
    assert len(set(first + second)) == 30
    row = await index.get_folder(ACCOUNT, "INBOX")
    assert row is not None and (row.messages, row.uidnext) == (30, 31)


async def test_move_changes_both_folders_in_one_apply(index: MailboxIndex) -> None:
    inbox, trash = await _folder(index), await _folder(index, "Trash")
    await index.apply([(inbox, FolderChange(added=[_msg("a"), _msg("b")]))])
    results = await index.apply([(trash, FolderChange(added=[_msg("a")])), (inbox, FolderChange(removed=[1]))])
    assert results[0].uids == [1] and results[0].folder.name == "Trash"
    assert results[1].folder.messages == 1
    usage = await index.usage(ACCOUNT)
    assert (usage.storage_used, usage.messages_used) == (200, 2)


async def test_over_quota_writes_nothing(index: MailboxIndex) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a")], check_quota=True))], (150, None))
    with pytest.raises(OverQuota):
        await index.apply([(folder, FolderChange(added=[_msg("b")], check_quota=True))], (150, None))
    await index.set_limits(ACCOUNT, None, 1)  # the account's own limit replaces the default
    with pytest.raises(OverQuota):
        await index.apply([(folder, FolderChange(added=[_msg("b")], check_quota=True))], (None, None))
    await index.apply([(folder, FolderChange(added=[_msg("b")]))], (150, None))  # delivery: no check
    row = await index.get_folder(ACCOUNT, "INBOX")
    assert row is not None and (row.messages, row.uidnext) == (2, 3)
    usage = await index.usage(ACCOUNT)
    assert (usage.storage_used, usage.messages_used, usage.custom_limits, usage.messages_limit) == (200, 2, True, 1)


async def test_directory_stamps_are_compare_and_set(index: MailboxIndex) -> None:
    folder = await _folder(index)
    one, two, three = DirStamp(1, 1), DirStamp(2, 2), DirStamp(3, 3)
    [result] = await index.apply([(folder, FolderChange(stamp_after=one, force_stamp=True))])
    assert result.folder.stamp == one
    [result] = await index.apply([(folder, FolderChange(stamp_before=one, stamp_after=two))])
    assert result.folder.stamp == two
    [result] = await index.apply([(folder, FolderChange(stamp_before=one, stamp_after=three))])
    assert result.folder.stamp == two  # someone else changed the directories in between: keep the old
    [result] = await index.apply([(folder, FolderChange(stamp_before=DirStamp(9, 2), stamp_after=three))])
    assert result.folder.stamp == DirStamp(2, 3)  # each directory on its own


async def test_claim_recent_gives_each_message_to_one_caller(index: MailboxIndex) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a"), _msg("b")]))])
    assert await index.claim_recent(folder) == (1, 3)
    assert await index.claim_recent(folder) == (3, 3)
    await index.apply([(folder, FolderChange(added=[_msg("c")]))])
    assert await index.claim_recent(folder) == (3, 4)


async def test_sync_entries_and_in_new(index: MailboxIndex) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[NewMessage("a", frozenset(), WHEN, 1, in_new=True),
                                                    _msg("b")]))])
    assert [e.name for e in await index.sync_entries(folder, only_in_new=True)] == ["a"]
    await index.apply([(folder, FolderChange(updated=[FlagUpdate(1, frozenset(), in_new=False)]))])
    assert await index.sync_entries(folder, only_in_new=True) == []
    assert [e.uid for e in await index.sync_entries(folder, [2, 7])] == [2]
    await index.apply([(folder, FolderChange(updated=[FlagUpdate(2, frozenset({"\\Deleted", "$x_%"}))]))])
    assert [e.uid for e in await index.sync_entries(folder, only_deleted=True)] == [2]
    assert await index.sync_entries(folder, [1], only_deleted=True) == []


async def test_rename_delete_and_subscriptions(index: MailboxIndex) -> None:
    parent, child = await _folder(index, "A"), await _folder(index, "A/b")
    await index.apply([(child, FolderChange(added=[_msg("x", size=10)]))])
    await index.set_subscribed(ACCOUNT, "A/b", True)
    await index.set_subscribed(ACCOUNT, "A/b", True)
    await index.set_subscribed(ACCOUNT, "Nowhere", True)  # RFC 9051 6.3.7: any name
    await index.rename_folders(ACCOUNT, [("A", "C"), ("A/b", "C/b")])
    assert [r.name for r in await index.list_folders(ACCOUNT)] == ["C", "C/b"]
    assert await index.subscriptions(ACCOUNT) == ["C/b", "Nowhere"]
    with pytest.raises(NotFound):
        await index.rename_folders(ACCOUNT, [("A", "D")])
    await _folder(index, "E")
    with pytest.raises(AlreadyExists):
        await index.rename_folders(ACCOUNT, [("C", "E")])
    await index.delete_folder(child)
    assert (await index.usage(ACCOUNT)).storage_used == 0
    assert [r.id for r in await index.all_folders()] == [parent, parent + 2]
    assert [r.id for r in await index.all_folders(after_id=parent, limit=1)] == [parent + 2]
    await index.set_subscribed(ACCOUNT, "Nowhere", False)
    assert await index.subscriptions(ACCOUNT) == ["C/b"]


async def test_recount_usage(index: MailboxIndex) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a", size=7), _msg("b", size=5)]))])
    usage = await index.recount_usage(ACCOUNT)
    assert (usage.storage_used, usage.messages_used) == (12, 2)


async def test_the_change_feed(index: MailboxIndex) -> None:
    start = await index.latest_change()
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a")]))])
    await index.apply([(folder, FolderChange(stamp_after=DirStamp(5, 5), force_stamp=True))])  # no message change
    rows = await index.changes_after(start)
    assert [(r.account, r.folder) for r in rows] == [(ACCOUNT, "INBOX"), (ACCOUNT, "INBOX")]
    assert rows[0].id < rows[1].id == await index.latest_change()
    assert await index.prune_changes(datetime.now(UTC) + timedelta(days=1)) == 2
    assert await index.changes_after(start) == []
    [result] = await index.apply([(folder, FolderChange(added=[_msg("b")]))])
    assert result.changed and (await index.latest_change()) > rows[1].id  # ids never reused


async def test_unknown_folder_is_not_found(index: MailboxIndex) -> None:
    with pytest.raises(NotFound):
        await index.apply([(999_999, FolderChange(added=[_msg("a")]))])
    assert await index.snapshot(999_999) is None


async def test_recount_folder(index: MailboxIndex, store: Store) -> None:
    folder = await _folder(index)
    await index.apply([(folder, FolderChange(added=[_msg("a", frozenset({"\\Seen"}), 7),
                                                    _msg("b", frozenset({"\\Deleted", "$k"}), 5)]))])
    from sqlalchemy import update

    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(update(mailbox_folders).values(messages=99, size=1, unseen=0, deleted=7))
    row = await index.recount_folder(folder)
    assert (row.messages, row.size, row.unseen, row.deleted) == (2, 12, 1, 1)
