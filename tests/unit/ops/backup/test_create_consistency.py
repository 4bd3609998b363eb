"""A backup taken while the server works: the database snapshot comes first, the files after it,
and the copy is then made to agree with the files (spec "Consistency while the server runs").

The server's own operations (expunge, move, delivery, queue delivery) are run at a chosen point:
after the snapshot, before the files are taken (a hook on the walk, which runs in the backup's
worker thread, runs them on the test's event loop and waits for them). No sleeps."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.spool import OutboundSpool
from hardmail.ops.backup import sources
from hardmail.ops.backup.create import BackupRequest, BackupResult, create_backup
from hardmail.ops.backup.sources import WalkResult
from unit.ops.backup.create_helpers import (
    ALICE,
    BOB,
    DataDir,
    archive_members,
    assert_consistent,
    database_copy,
    manifest_of,
    message,
)

Action = Callable[[], Coroutine[Any, Any, Any]]


async def _backup_with(data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: Action,
                       after_walk: Callable[[WalkResult], None] | None = None, **options: Any) -> BackupResult:
    """A backup whose ``action`` runs after the snapshot and before the files are listed;
    ``after_walk`` runs on the listing (before any file is read)."""
    loop = asyncio.get_running_loop()
    real_walk = sources.walk

    def walk(*args: Any, **kwargs: Any) -> WalkResult:
        asyncio.run_coroutine_threadsafe(action(), loop).result(timeout=60)
        walked = real_walk(*args, **kwargs)
        if after_walk is not None:
            after_walk(walked)
        return walked

    monkeypatch.setattr("hardmail.ops.backup.file_phase.walk", walk)
    return await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False, **options))


def _copy_of(result: BackupResult, tmp_path: Path) -> Any:
    return database_copy(archive_members(result.archive_path), tmp_path)


def _folder(copy: Any, account: str, name: str) -> dict[str, int]:
    columns = ("id", "messages", "size", "unseen", "deleted", "uidnext", "highestmodseq")
    row = copy.execute(f"SELECT {', '.join(columns)} FROM mailbox_folders WHERE account = ? AND name = ?",
                       (account, name)).fetchone()
    return dict(zip(columns, row, strict=True))


async def test_a_message_expunged_after_the_snapshot_is_dropped_with_a_tombstone(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await data.mailboxes.snapshot(ALICE, "INBOX")
    uid = next(m.uid for m in first.messages if not m.flags & {"\\Seen", "\\Deleted"})
    await data.mailboxes.store_flags(ALICE, "INBOX", [uid], "add", ["\\Deleted"])  # EXPUNGE removes these
    before = await data.mailboxes.snapshot(ALICE, "INBOX")
    unseen = next(m for m in before.messages if m.uid == uid)
    usage = await data.mailboxes.quota(ALICE)
    result = await _backup_with(data, tmp_path, monkeypatch,
                                lambda: data.mailboxes.expunge(ALICE, "INBOX", [unseen.uid]))
    copy = _copy_of(result, tmp_path)
    folder = _folder(copy, ALICE, "INBOX")
    assert folder["messages"] == before.info.messages - 1 and folder["size"] == before.info.size - unseen.size
    assert folder["unseen"] == before.info.unseen - 1 and folder["deleted"] == before.info.deleted - 1
    assert folder["highestmodseq"] == before.info.highestmodseq + 1  # RFC 7162: the tombstone has a new MODSEQ
    assert copy.execute("SELECT modseq FROM mailbox_vanished WHERE folder_id = ? AND uid = ?",
                        (folder["id"], unseen.uid)).fetchone() == (folder["highestmodseq"],)
    assert copy.execute("SELECT storage_used, messages_used FROM mailbox_accounts WHERE account = ?",
                        (ALICE,)).fetchone() == (usage.storage_used - unseen.size, usage.messages_used - 1)
    assert result.manifest.notes["vanished_dropped"] == 1
    assert not any(unseen.name in e.path for e in result.manifest.files)
    assert_consistent(result.manifest, copy)


async def test_a_message_that_vanishes_between_listing_and_reading_is_dropped(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone: list[str] = []

    def remove_one(walked: WalkResult) -> None:
        victim = next(f for f in walked.files if f.kind == "message" and f.folder.endswith("/bob"))
        os.unlink(data.path / victim.rel)
        gone.append(victim.base)

    async def nothing() -> None:
        return None

    result = await _backup_with(data, tmp_path, monkeypatch, nothing, after_walk=remove_one)
    assert result.manifest.notes["vanished_dropped"] == 1
    copy = _copy_of(result, tmp_path)
    assert copy.execute("SELECT COUNT(*) FROM mailbox_messages WHERE name = ?", (gone[0],)).fetchone() == (0,)
    assert_consistent(result.manifest, copy)


async def test_a_message_delivered_after_the_snapshot_is_left_for_the_next_backup(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    delivered: list[Path] = []

    async def deliver() -> None:
        delivered.append(await data.deliver(BOB, 900))

    result = await _backup_with(data, tmp_path, monkeypatch, deliver)
    assert result.manifest.notes["unindexed_skipped"] == 1
    assert not any(delivered[0].name in e.path for e in result.manifest.files)
    assert_consistent(result.manifest, _copy_of(result, tmp_path))
    monkeypatch.undo()
    after = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False,
                                                           incremental=True))
    assert [e for e in after.manifest.stored_here() if delivered[0].name in e.path]  # the next one has it


async def test_a_message_moved_during_the_backup_is_kept_in_its_new_folder(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    moved = await data.mailboxes.append(ALICE, "INBOX", message(700), ("\\Seen",), internaldate=old)
    archive_before = await data.mailboxes.snapshot(ALICE, "Archive")
    result = await _backup_with(data, tmp_path, monkeypatch,
                                lambda: data.mailboxes.move(ALICE, "INBOX", [moved.uid], "Archive"))
    copy = _copy_of(result, tmp_path)
    assert result.manifest.notes["unindexed_adopted"] == 1 and result.manifest.notes["vanished_dropped"] == 1
    archive = _folder(copy, ALICE, "Archive")
    assert archive["uidnext"] == archive_before.info.uidnext + 1
    assert archive["messages"] == archive_before.info.messages + 1
    row = copy.execute("SELECT uid, flags, internaldate, in_new FROM mailbox_messages WHERE folder_id = ? "
                       "AND uid = ?", (archive["id"], archive_before.info.uidnext)).fetchone()
    assert row == (archive_before.info.uidnext, "\\Seen", int(old.timestamp()), 0)
    assert_consistent(result.manifest, copy)


async def test_an_indexed_message_missed_by_the_listing_is_looked_for_again(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missed: list[str] = []

    def hide_one(walked: WalkResult) -> None:  # as a rename during the listing can make a file unseen
        victim = next(f for f in walked.files if f.kind == "message" and "/.Archive/" in f.rel)
        walked.files.remove(victim)
        missed.append(victim.rel)

    async def nothing() -> None:
        return None

    result = await _backup_with(data, tmp_path, monkeypatch, nothing, after_walk=hide_one)
    assert f"files/{missed[0]}" in {e.path for e in result.manifest.files}
    assert not result.manifest.notes.get("vanished_dropped")
    assert_consistent(result.manifest, _copy_of(result, tmp_path))


async def test_a_queue_entry_delivered_during_the_backup_is_dropped(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [queued] = [entry.queue_id for entry in OutboundSpool(data.config.spool_dir).list()]

    async def delivered() -> None:  # the queue removes the spool files first, then the row
        OutboundSpool(data.config.spool_dir).remove(queued)

    result = await _backup_with(data, tmp_path, monkeypatch, delivered)
    copy = _copy_of(result, tmp_path)
    assert copy.execute("SELECT COUNT(*) FROM queue_messages").fetchone() == (0,)
    assert copy.execute("SELECT COUNT(*) FROM queue_recipients").fetchone() == (0,)
    assert result.manifest.notes["queue_dropped"] == 1
    assert not any(queued in e.path for e in result.manifest.files)


async def test_mail_queued_after_the_snapshot_is_left_for_the_next_backup(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[str] = []

    async def enqueue() -> None:
        queued.append(await data.enqueue(901))

    result = await _backup_with(data, tmp_path, monkeypatch, enqueue)
    assert result.manifest.notes["unqueued_skipped"] == 2  # its message and its envelope
    assert not any(queued[0] in e.path for e in result.manifest.files)
    copy = _copy_of(result, tmp_path)
    spooled = {e.path.rsplit("/", 1)[1].split(".")[0] for e in result.manifest.files if "/spool/queue/" in e.path}
    assert spooled == {row[0] for row in copy.execute("SELECT queue_id FROM queue_messages")}


async def test_a_delivery_whose_indexing_failed_before_the_snapshot_is_adopted(
        data: DataDir, tmp_path: Path) -> None:
    """The file was fsync'd and acknowledged, the index commit failed: the next sync would index
    it, so the backup does what that sync would do rather than lose it."""
    [path] = MaildirStore(data.config.maildir_root, "mx.example.org").deliver([BOB], message(950))
    an_hour_ago = datetime.now(UTC).timestamp() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    before = await data.mailboxes.snapshot(BOB, "INBOX")
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False))
    copy = _copy_of(result, tmp_path)
    assert result.manifest.notes["unindexed_adopted"] == 1
    row = copy.execute("SELECT uid, in_new, size FROM mailbox_messages WHERE name = ?", (path.name,)).fetchone()
    assert row == (before.info.uidnext, 1, len(message(950)))
    assert_consistent(result.manifest, copy)


async def test_a_backup_taken_while_mail_keeps_arriving_is_consistent(data: DataDir, tmp_path: Path) -> None:
    maildirs = MaildirStore(data.config.maildir_root, "mx.example.org")
    batch = maildirs.deliver_batch([([ALICE], message(n, 2000)) for n in range(2000, 2600)])
    await data.mailboxes.deliver_indexed(ALICE, "INBOX", [paths[0] for paths in batch])
    backup = asyncio.ensure_future(create_backup(data.config, BackupRequest(destination=tmp_path / "backups",
                                                                            verify=False)))
    n = 1000
    while not backup.done() and n < 1200:
        await data.append(ALICE, "INBOX", n, ("\\Seen",) if n % 2 else ())
        await data.deliver(BOB, n)
        if n % 3 == 0:
            snapshot = await data.mailboxes.snapshot(ALICE, "INBOX")
            await data.mailboxes.store_flags(ALICE, "INBOX", [snapshot.messages[0].uid], "add", ["\\Deleted"])
            await data.mailboxes.expunge(ALICE, "INBOX", [snapshot.messages[0].uid])
        n += 1
    result = await backup
    members = archive_members(result.archive_path)
    assert_consistent(manifest_of(members), database_copy(members, tmp_path))
