"""Sync, re-index and start-up reconciling: files changed behind the server's back (or left by a
crash between a file change and its commit) are repaired without renumbering UIDs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from hardmail.mailbox import ChangeNotifier, files
from hardmail.mailbox.notifier import Subscription
from hardmail.store.ports_mailbox import MessageRecord
from unit.mailbox.mailbox_helpers import ACCOUNT, MESSAGE, Env, assert_consistent, files_on_disk


def _drop(folder: Path, sub: str, name: str, data: bytes = MESSAGE, mtime: float | None = None) -> Path:
    path = folder / sub / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


async def test_files_dropped_into_new_get_the_next_uids_in_delivery_order(env: Env) -> None:
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    folder = env.folder_dir()
    _drop(folder, "new", "1700000002.M5P1Q1.other")
    _drop(folder, "new", "1700000001.M900P1Q1.other")
    _drop(folder, "new", "1700000001.M10P1Q1.other")
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert [(m.uid, m.name) for m in snapshot.messages] == [
        (1, snapshot.messages[0].name), (2, "1700000001.M10P1Q1.other"), (3, "1700000001.M900P1Q1.other"),
        (4, "1700000002.M5P1Q1.other")]
    assert os.listdir(folder / "new") == []
    assert sorted(os.listdir(folder / "cur"))[:3] == [
        "1700000001.M10P1Q1.other:2,", "1700000001.M900P1Q1.other:2,", "1700000002.M5P1Q1.other:2,"]
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_renames_and_removals_behind_our_back_keep_uids(env: Env) -> None:
    for _ in range(3):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [2], "add", ["$Keyword"])
    folder = env.folder_dir()
    snapshot = await env.mailboxes.snapshot(ACCOUNT, "INBOX")
    one, two, three = (m.name for m in snapshot.messages)
    os.rename(folder / "cur" / f"{two}:2,", folder / "cur" / f"{two}:2,RS")  # another client's flags
    os.unlink(folder / "cur" / f"{three}:2,")
    _drop(folder, "cur", "1600000000.M1P1Q1.other:2,F", mtime=1_600_000_000)
    synced = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert [(m.uid, m.flags) for m in synced.messages] == [
        (1, frozenset()), (2, frozenset({"\\Answered", "\\Seen", "$Keyword"})), (4, frozenset({"\\Flagged"}))]
    assert synced.messages[2].internaldate.timestamp() == 1_600_000_000  # the file's mtime
    assert synced.messages[1].modseq > snapshot.messages[1].modseq
    changes = await env.mailboxes.changes_since(ACCOUNT, "INBOX", snapshot.info.highestmodseq)
    assert changes.vanished == [3] and [m.uid for m in changes.changed] == [2, 4]
    assert synced.info.uidnext == 5 and one == synced.messages[0].name
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_an_unchanged_folder_is_not_scanned(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(3):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1], "add", ["\\Seen"])
    await env.mailboxes.expunge(ACCOUNT, "INBOX")
    _age(env.folder_dir())  # changed long ago: a scan may trust the directories' times
    await env.mailboxes.sync(ACCOUNT, "INBOX")
    scans: list[Path] = []
    original = files.scan_folder
    monkeypatch.setattr(files, "scan_folder", lambda folder, *a, **k: scans.append(folder) or original(folder, *a, **k))
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)  # our own changes keep the index's mtimes current
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [2], "add", ["\\Deleted"])
    await env.mailboxes.expunge(ACCOUNT, "INBOX")
    await env.mailboxes.copy(ACCOUNT, "INBOX", [1], "INBOX")
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert scans == [] and len(snapshot.messages) == 4
    _drop(env.folder_dir(), "new", "1700000000.M1P1Q1.x")
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert scans == [env.folder_dir()] and len(snapshot.messages) == 5


def _age(folder: Path, seconds: float = 60) -> None:
    for sub in ("new", "cur"):
        info = os.stat(folder / sub)
        os.utime(folder / sub, ns=(info.st_atime_ns, info.st_mtime_ns - int(seconds * 1e9)))


async def test_a_scan_of_a_just_changed_directory_is_repeated(env: Env) -> None:
    """A file added in the same timestamp tick as the scan leaves the mtime as the scan saw it."""
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    folder = env.folder_dir()
    _drop(folder, "cur", "1700000000.M1P1Q1.x:2,")
    await env.mailboxes.sync(ACCOUNT, "INBOX")
    seen = os.stat(folder / "cur").st_mtime_ns
    _drop(folder, "cur", "1700000000.M2P1Q1.x:2,")
    os.utime(folder / "cur", ns=(seen, seen))  # the same tick
    assert len((await env.mailboxes.sync(ACCOUNT, "INBOX")).messages) == 3


async def test_a_flag_rename_without_its_commit_is_taken_from_the_file(env: Env) -> None:
    """A crash between the rename and the commit: the index still has the old flags."""
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE, ["\\Seen"])
    folder, name = env.folder_dir(), (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages[0].name
    os.rename(folder / "cur" / f"{name}:2,S", folder / "cur" / f"{name}:2,ST")
    assert await env.mailboxes.read_message(ACCOUNT, "INBOX", 1) == MESSAGE  # found by its base name
    [message] = (await env.mailboxes.sync(ACCOUNT, "INBOX")).messages
    assert message.uid == 1 and message.flags == frozenset({"\\Seen", "\\Deleted"})


async def test_reindex_reports_and_keeps_uids(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    for _ in range(2):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    folder = env.folder_dir()
    names = [m.name for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages]
    os.unlink(folder / "cur" / f"{names[0]}:2,")
    os.rename(folder / "cur" / f"{names[1]}:2,", folder / "cur" / f"{names[1]}:2,S")
    _drop(folder, "cur", "1700000000.M1P1Q1.x:2,")
    os.makedirs(folder / ".Made.Elsewhere" / "cur")
    os.makedirs(folder / ".Made.Elsewhere" / "new")
    os.makedirs(folder / ".Made.Elsewhere" / "tmp")
    _drop(folder / ".Made.Elsewhere", "new", "1700000000.M1P1Q2.x")
    report = await env.mailboxes.reindex(ACCOUNT)
    assert (report.added, report.removed, report.renamed) == (2, 1, 1)
    assert [m.uid for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages] == [2, 3]
    assert len((await env.mailboxes.snapshot(ACCOUNT, "Made/Elsewhere")).messages) == 1
    quota = await env.mailboxes.quota(ACCOUNT)
    assert quota.messages_used == 3
    assert (await env.mailboxes.reindex(ACCOUNT, "INBOX")).added == 0


async def test_reconcile_all_repairs_what_a_crash_left(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    for _ in range(2):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    await env.mailboxes.append(ACCOUNT, "Sent", MESSAGE)
    for info in await env.mailboxes.list_folders(ACCOUNT):
        _age(env.folder_dir(info.name))
    await env.mailboxes.reconcile_all()  # new folders get their first scan
    assert await env.mailboxes.reconcile_all() == 0
    folder = env.folder_dir()
    first = (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages[0].name
    os.unlink(folder / "cur" / f"{first}:2,")  # an expunge's unlink without its commit
    _drop(folder, "cur", "1700000000.M1P9Q1.x:2,S")  # an append's rename without its commit
    _drop(folder, "tmp", "1600000000.M1P9Q2.x", mtime=1_600_000_000)  # a write never renamed
    (folder / "..DELETED-0123").mkdir()  # a folder delete that crashed after its rename
    os.rename(folder / ".Junk", folder / "..DELETED-4567")  # ... and before its commit
    assert await env.mailboxes.reconcile_all() == 2  # INBOX synced, Junk's row dropped
    _age(folder)
    await env.mailboxes.reconcile_all()
    assert [m.uid for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages] == [2, 3]
    assert os.listdir(folder / "tmp") == []
    assert not (folder / "..DELETED-0123").exists() and await env.mailboxes.folder(ACCOUNT, "Junk") is None
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")
    assert await env.mailboxes.reconcile_all() == 0


async def test_a_folder_directory_removed_behind_our_back_is_emptied(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    await env.mailboxes.append(ACCOUNT, "Sent", MESSAGE)
    files.remove_tree(env.folder_dir("Sent"))
    snapshot = await env.mailboxes.sync(ACCOUNT, "Sent")
    assert snapshot.messages == [] and (env.folder_dir("Sent") / "cur").is_dir()


async def test_notifier_wakes_local_subscribers_at_once_and_others_by_polling(env: Env) -> None:
    notifier = ChangeNotifier(env.store.mailbox, env.mailboxes.clock)
    env.mailboxes.notifier = notifier
    await notifier.start()
    try:
        inbox: Subscription = notifier.subscribe(ACCOUNT, "inbox")
        sent = notifier.subscribe(ACCOUNT, "Sent")
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
        assert inbox.changed.is_set() and not sent.changed.is_set()
        inbox.changed.clear()
        other = env.other()  # another process: no local notification reaches us
        await other.append(ACCOUNT, "INBOX", MESSAGE)
        await asyncio.wait_for(inbox.changed.wait(), timeout=10)
        assert not sent.changed.is_set()
        inbox.close()
        sent.close()
        assert notifier.subscriber_count == 0
    finally:
        await notifier.close()


async def test_notifier_poll_reads_the_feed_once_for_every_subscriber(env: Env) -> None:
    notifier = ChangeNotifier(env.store.mailbox, env.mailboxes.clock)
    subscriptions = [notifier.subscribe(ACCOUNT, "INBOX") for _ in range(100)]
    await env.other().append(ACCOUNT, "INBOX", MESSAGE)
    assert await notifier.poll_once() >= 1
    assert all(s.changed.is_set() for s in subscriptions)
    assert files_on_disk(env.folder_dir())


async def test_a_cached_snapshot_follows_changes_made_elsewhere(env: Env) -> None:
    for _ in range(4):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    first = await env.mailboxes.snapshot(ACCOUNT, "INBOX")  # now cached in this process
    first.messages.clear()  # a caller's list is its own
    other = env.other()
    await other.store_flags(ACCOUNT, "INBOX", [2, 3], "add", ["\\Deleted", "$X"])
    await other.expunge(ACCOUNT, "INBOX", [3])
    await other.append(ACCOUNT, "INBOX", MESSAGE)
    mine, theirs = await env.mailboxes.snapshot(ACCOUNT, "INBOX"), await other.snapshot(ACCOUNT, "INBOX")
    assert mine.messages == theirs.messages
    assert [(m.uid, "$X" in m.flags) for m in mine.messages] == [(1, False), (2, True), (4, False), (5, False)]
    assert mine.info == theirs.info


def test_patching_a_message_list() -> None:
    from datetime import UTC, datetime

    from hardmail.mailbox.cache import SnapshotCache, patched
    from hardmail.store.ports_mailbox import MessageRecord

    def record(uid: int, modseq: int = 1) -> MessageRecord:
        return MessageRecord(uid, modseq, frozenset(), datetime(2024, 1, 1, tzinfo=UTC), 1, str(uid))

    base = [record(1), record(2), record(5)]
    assert patched(base, [], []) is base
    assert [m.uid for m in patched(base, [record(7), record(8)], [])] == [1, 2, 5, 7, 8]
    result = patched(base, [record(2, 9), record(6)], [1, 5])
    assert [(m.uid, m.modseq) for m in result] == [(2, 9), (6, 1)]
    cache = SnapshotCache(max_messages=4)
    cache.put(1, 5, base)
    cache.put(2, 5, [record(1)])
    cache.put(3, 5, [record(1)])  # over the bound: folder 1 goes
    assert cache.get(1) is None and cache.get(2) is not None
    cache.put(4, 5, [record(i) for i in range(9)])  # bigger than the whole cache: not kept
    assert cache.get(4) is None


async def test_deliveries_do_not_make_every_sync_read_cur(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from hardmail.delivery.maildir import MaildirStore

    delivery = MaildirStore(env.root, "mx.example.org")
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    _age(env.folder_dir())
    await env.mailboxes.sync(ACCOUNT, "INBOX")
    listed: list[Path] = []
    original = files._list
    monkeypatch.setattr(files, "_list", lambda directory: listed.append(directory) or original(directory))
    for i in range(3):
        paths = delivery.deliver([ACCOUNT], MESSAGE + bytes([65 + i]))
        await env.mailboxes.deliver_indexed(ACCOUNT, "INBOX", paths)
        assert len((await env.mailboxes.sync(ACCOUNT, "INBOX")).messages) == i + 2
    assert {p.name for p in listed} == {"new"}  # new/ is read (it is small), cur/ never


async def test_files_named_by_other_programs_get_canonical_names(env: Env) -> None:
    folder = env.folder_dir()
    await env.mailboxes.ensure_account(ACCOUNT)
    _drop(folder, "cur", "1700000000.M1P1Q1.x")  # no info at all
    _drop(folder, "cur", "1700000000.M2P1Q1.x:2,SR")  # letters out of order
    _drop(folder, "cur", "1700000000.M3P1Q1.x:2,Sa")  # a Dovecot keyword letter: left alone
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert [m.flags for m in snapshot.messages] == [
        frozenset(), frozenset({"\\Seen", "\\Answered"}), frozenset({"\\Seen"})]
    assert sorted(os.listdir(folder / "cur")) == [
        "1700000000.M1P1Q1.x:2,", "1700000000.M2P1Q1.x:2,RS", "1700000000.M3P1Q1.x:2,Sa"]
    for message in snapshot.messages:
        assert await env.mailboxes.read_message(ACCOUNT, "INBOX", message.uid) == MESSAGE
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_an_unindexed_delivery_is_not_hidden_by_our_own_changes(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivery writes new/ without the folder lock: a file whose indexing never happened (a crash)
    while we changed the folder must still be found afterwards."""
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    _age(env.folder_dir())
    await env.mailboxes.sync(ACCOUNT, "INBOX")
    original = files.rename_flags

    def rename_while_delivering(folder: Path, *args: object) -> list[int]:
        missing = original(folder, *args)  # type: ignore[arg-type]
        _drop(folder, "new", "1700000000.M1P1Q1.crashed")  # between our two looks at the directories
        return missing

    monkeypatch.setattr(files, "rename_flags", rename_while_delivering)
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1], "add", ["\\Seen"])
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    assert len((await env.mailboxes.sync(ACCOUNT, "INBOX")).messages) == 3


async def test_sessions_woken_together_share_one_read(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = ChangeNotifier(env.store.mailbox, env.mailboxes.clock)
    env.mailboxes.notifier = notifier
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    start = (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).info.highestmodseq
    subscriptions = [notifier.subscribe(ACCOUNT, "INBOX") for _ in range(50)]
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    assert all(s.changed.is_set() for s in subscriptions)
    reads: list[int] = []
    index = env.mailboxes.index
    original = index.changes_since

    async def counted(folder_id: int, modseq: int) -> tuple[list[MessageRecord], list[int]]:
        reads.append(modseq)
        return await original(folder_id, modseq)

    monkeypatch.setattr(index, "changes_since", counted)
    results = await asyncio.gather(*[env.mailboxes.changes_since(ACCOUNT, "inbox", start) for _ in subscriptions])
    assert reads == [start] and all([m.uid for m in r.changed] == [2] for r in results)
    results[0].changed.clear()  # each caller has its own lists
    assert results[1].changed
    first = asyncio.ensure_future(env.mailboxes.changes_since(ACCOUNT, "INBOX", start))
    await asyncio.sleep(0)  # a turn of the loop: the first read has begun
    assert env.mailboxes._reading
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)  # announced after it began: not shared
    late = await env.mailboxes.changes_since(ACCOUNT, "INBOX", start)
    await first
    assert len(reads) == 3 and [m.uid for m in late.changed] == [2, 3]
    for subscription in subscriptions:
        subscription.close()
    await env.mailboxes.changes_since(ACCOUNT, "INBOX", start)  # no subscribers: no sharing
    assert len(reads) == 4
