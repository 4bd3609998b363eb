"""Group commit: concurrent deliveries share one batch, each caller gets its own files or its own
error, and no caller hears back before its file was fsync'd and renamed into new/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hardmail.delivery import maildir as maildir_module
from hardmail.delivery.group_commit import GroupCommit, group_commit_for
from hardmail.delivery.maildir import MaildirStore


class CountingStore(MaildirStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root, "mx.example.org")
        self.batches: list[int] = []

    def deliver_batch(self, items, folder=None):  # type: ignore[no-untyped-def]
        self.batches.append(len(items))
        return super().deliver_batch(items, folder)


async def test_concurrent_deliveries_share_one_batch(tmp_path: Path, sample_message: bytes) -> None:
    store = CountingStore(tmp_path / "mail")
    commit = GroupCommit(store, asyncio.get_running_loop())
    results = await asyncio.gather(*(commit.deliver([f"user{i}@example.org"], [sample_message]) for i in range(5)))
    assert store.batches == [5]
    for i, [path] in enumerate(results):
        assert path.parent == tmp_path / "mail" / "example.org" / f"user{i}" / "new"
        assert path.read_bytes() == sample_message


async def test_a_bad_message_fails_only_its_own_caller(tmp_path: Path, sample_message: bytes) -> None:
    commit = GroupCommit(CountingStore(tmp_path / "mail"), asyncio.get_running_loop())
    good, bad, other = await asyncio.gather(
        commit.deliver(["alice@example.org"], [sample_message]),
        commit.deliver(["not-an-address"], [sample_message]),
        commit.deliver(["bob@example.org"], [sample_message]),
        return_exceptions=True,
    )
    assert isinstance(bad, ValueError)
    assert isinstance(good, list) and isinstance(other, list)
    assert good[0].read_bytes() == other[0].read_bytes() == sample_message


async def test_folders_are_kept_apart(tmp_path: Path, sample_message: bytes) -> None:
    commit = GroupCommit(CountingStore(tmp_path / "mail"), asyncio.get_running_loop())
    inbox, junk = await asyncio.gather(commit.deliver(["bob@example.org"], [sample_message]),
                                       commit.deliver(["bob@example.org"], [sample_message], "Junk"))
    assert inbox[0].parent == tmp_path / "mail" / "example.org" / "bob" / "new"
    assert junk[0].parent == tmp_path / "mail" / "example.org" / "bob" / ".Junk" / "new"


async def test_no_caller_returns_before_its_file_is_fsynced_and_in_new(tmp_path: Path, sample_message: bytes,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync_file = maildir_module.fsync_file
    monkeypatch.setattr(maildir_module, "fsync_file",
                        lambda path, fd: (synced.append(path.name), real_fsync_file(path, fd)))
    commit = GroupCommit(MaildirStore(tmp_path / "mail", "mx.example.org"), asyncio.get_running_loop())
    results = await asyncio.gather(*(commit.deliver([f"u{i}@example.org"], [sample_message]) for i in range(3)))
    for [path] in results:
        assert path.name in synced and path.exists()
        assert not list((path.parent.parent / "tmp").iterdir())


async def test_a_failed_fsync_reaches_every_caller_of_the_batch(tmp_path: Path, sample_message: bytes,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, fd: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(maildir_module, "fsync_file", broken)
    commit = GroupCommit(MaildirStore(tmp_path / "mail", "mx.example.org"), asyncio.get_running_loop())
    outcomes = await asyncio.gather(*(commit.deliver([f"u{i}@example.org"], [sample_message]) for i in range(2)),
                                    return_exceptions=True)
    assert all(isinstance(o, OSError) for o in outcomes)
    assert not list((tmp_path / "mail").rglob("new/*"))


async def test_one_committer_per_store_and_loop(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "mail", "mx.example.org")
    assert group_commit_for(store) is group_commit_for(store)



async def test_a_caller_cancelled_before_its_batch_is_sent_is_not_stored(tmp_path: Path, sample_message: bytes) -> None:
    """A session stopped (server stop, timeout) before its batch left has removed its incoming
    file and will never send 250: its request is dropped, so it neither fails the batch of the
    others (the writer could not open the file) nor is stored for a client that will resend it."""
    store = CountingStore(tmp_path / "mail")
    commit = GroupCommit(store, asyncio.get_running_loop())
    gone = asyncio.ensure_future(commit.deliver(["gone@example.org"], [sample_message]))
    await asyncio.sleep(0)  # queued; the flush task runs at the next turn
    gone.cancel()
    [path] = await commit.deliver(["stays@example.org"], [sample_message])
    assert store.batches == [1] and path.read_bytes() == sample_message
    assert not (tmp_path / "mail" / "example.org" / "gone").exists()
