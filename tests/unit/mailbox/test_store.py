"""MailboxStore on SQLite and real Maildir++ files: messages, flags, folders, quota."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from hardmail.delivery.maildir import MaildirStore
from hardmail.mailbox import FolderError, QuotaExceeded
from unit.mailbox.mailbox_helpers import ACCOUNT, MESSAGE, Env, assert_consistent, files_on_disk


async def test_a_new_account_gets_inbox_and_special_use_folders(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    await env.mailboxes.ensure_account(ACCOUNT)  # idempotent
    folders = await env.mailboxes.list_folders(ACCOUNT)
    assert [(f.name, f.special_use, f.subscribed) for f in folders] == [
        ("INBOX", None, True), ("Archive", "\\Archive", True), ("Drafts", "\\Drafts", True),
        ("Junk", "\\Junk", True), ("Sent", "\\Sent", True), ("Trash", "\\Trash", True)]
    account_dir = env.folder_dir()
    assert account_dir == env.root / "example.org" / "alice"
    for sub in ("cur", "new", "tmp"):
        assert (account_dir / sub).is_dir() and (account_dir / ".Sent" / sub).is_dir()
    assert (account_dir / ".Sent" / "maildirfolder").is_file()  # Maildir++ marker
    assert len({f.uidvalidity for f in folders}) == len(folders)


async def test_append_writes_cur_with_flags_and_indexes_it(env: Env) -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    result = await env.mailboxes.append(ACCOUNT, "inbox", MESSAGE, ["\\seen", "$Work", "\\Recent"], when)
    assert result.uid == 1
    snapshot = await env.mailboxes.snapshot(ACCOUNT, "INBOX")
    [message] = snapshot.messages
    assert (message.flags, message.internaldate, message.size) == (frozenset({"\\Seen", "$Work"}), when, len(MESSAGE))
    [(name, place)] = files_on_disk(env.folder_dir()).items()
    assert place == f"cur/{name}:2,S" and name == message.name and f",S={len(MESSAGE)}" in name
    assert os.stat(env.folder_dir() / place).st_mtime == when.timestamp()  # INTERNALDATE, as Dovecot
    assert await env.mailboxes.read_message(ACCOUNT, "INBOX", 1) == MESSAGE
    assert snapshot.info.uidvalidity == result.uidvalidity and snapshot.info.uidnext == 2


async def test_flags_rename_the_file_and_keywords_stay_in_the_index(env: Env) -> None:
    for _ in range(3):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    result = await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1, 2, 9], "add", ["\\Flagged", "\\Seen"])
    assert [m.uid for m in result.changed] == [1, 2]
    modseq = result.changed[0].modseq
    keyword = await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1], "add", ["$Label1"])
    assert keyword.changed[0].modseq > modseq
    conditional = await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1, 2], "remove", ["\\Seen"],
                                                  unchanged_since=modseq)
    assert conditional.failed_uids == [1] and [m.uid for m in conditional.changed] == [2]  # RFC 7162 3.1.3
    unchanged = await env.mailboxes.store_flags(ACCOUNT, "INBOX", [3], "remove", ["\\Seen"])
    assert unchanged.changed == []
    snapshot = await env.mailboxes.snapshot(ACCOUNT, "INBOX")
    assert [m.flags for m in snapshot.messages] == [
        frozenset({"\\Flagged", "\\Seen", "$Label1"}), frozenset({"\\Flagged"}), frozenset()]
    assert sorted(place.rpartition(":2,")[2] for place in files_on_disk(env.folder_dir()).values()) == ["", "F", "FS"]
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_expunge_removes_only_deleted_messages_and_leaves_tombstones(env: Env) -> None:
    for _ in range(4):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    before = (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).info.highestmodseq
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [1, 2, 3], "add", ["\\Deleted"])
    assert await env.mailboxes.expunge(ACCOUNT, "INBOX", [2, 4]) == [2]  # UID EXPUNGE: only \Deleted ones
    assert await env.mailboxes.expunge(ACCOUNT, "INBOX") == [1, 3]
    assert await env.mailboxes.expunge(ACCOUNT, "INBOX") == []
    changes = await env.mailboxes.changes_since(ACCOUNT, "INBOX", before)
    assert changes.vanished == [1, 2, 3] and changes.changed == []
    assert [m.uid for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages] == [4]
    assert (await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)).uid == 5
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_copy_and_move_keep_flags_and_report_uid_pairs(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE, ["\\Seen", "$Work"])
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE + b"2")
    copied = await env.mailboxes.copy(ACCOUNT, "INBOX", [1, 2], "Archive")
    archive = await env.mailboxes.snapshot(ACCOUNT, "Archive")
    assert copied.uidvalidity == archive.info.uidvalidity and copied.pairs == [(1, 1), (2, 2)]
    assert archive.messages[0].flags == frozenset({"\\Seen", "$Work"})
    moved = await env.mailboxes.move(ACCOUNT, "INBOX", [2], "Trash")
    assert moved.pairs == [(2, 1)]
    assert [m.uid for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages] == [1]
    assert await env.mailboxes.read_message(ACCOUNT, "Trash", 1) == MESSAGE + b"2"
    assert (await env.mailboxes.changes_since(ACCOUNT, "INBOX", 0)).vanished == [2]
    quota = await env.mailboxes.quota(ACCOUNT)
    assert quota.messages_used == 4 and quota.storage_used == 4 * len(MESSAGE) + 2
    for name in ("INBOX", "Archive", "Trash"):
        await assert_consistent(env.mailboxes, ACCOUNT, name)


async def test_move_within_a_folder_gives_new_uids(env: Env) -> None:
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    moved = await env.mailboxes.move(ACCOUNT, "INBOX", [1], "INBOX")
    assert moved.pairs == [(1, 2)]
    assert [m.uid for m in (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages] == [2]
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_quota_refuses_append_and_copy(env: Env) -> None:
    env.mailboxes.quota_defaults = (None, 2)
    await env.mailboxes.ensure_account(ACCOUNT)
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    with pytest.raises(QuotaExceeded):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    with pytest.raises(QuotaExceeded):
        await env.mailboxes.copy(ACCOUNT, "INBOX", [1], "Archive")
    assert len(files_on_disk(env.folder_dir())) == 2 and files_on_disk(env.folder_dir("Archive")) == {}
    await env.mailboxes.set_quota(ACCOUNT, len(MESSAGE) * 3, None)
    quota = await env.mailboxes.quota(ACCOUNT)
    assert (quota.storage_limit, quota.messages_limit, quota.messages_used) == (len(MESSAGE) * 3, None, 2)
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE)
    with pytest.raises(QuotaExceeded):
        await env.mailboxes.append(ACCOUNT, "INBOX", b"x")
    await env.mailboxes.set_quota(ACCOUNT, None, None)
    await env.mailboxes.append(ACCOUNT, "INBOX", b"x")  # unlimited
    with pytest.raises(FolderError):
        await env.mailboxes.set_quota(ACCOUNT, -1, None)
    await env.mailboxes.reset_quota(ACCOUNT)
    assert (await env.mailboxes.quota(ACCOUNT)).messages_limit == 2  # the default again


async def test_local_delivery_is_indexed_and_moved_to_cur_on_sync(env: Env) -> None:
    delivery = MaildirStore(env.root, "mx.example.org")
    paths = [delivery.deliver([ACCOUNT], MESSAGE + str(i).encode())[0] for i in range(3)]
    assert await env.mailboxes.deliver_indexed(ACCOUNT, "INBOX", paths) == [1, 2, 3]
    assert await env.mailboxes.deliver_indexed(ACCOUNT, "INBOX", paths) == [1, 2, 3]  # idempotent
    assert await env.mailboxes.read_message(ACCOUNT, "INBOX", 2) == MESSAGE + b"1"  # still in new/
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")
    assert [m.uid for m in snapshot.messages] == [1, 2, 3] and snapshot.recent_uids == {1, 2, 3}
    assert all(p.startswith("cur/") and p.endswith(":2,") for p in files_on_disk(env.folder_dir()).values())
    assert (await env.mailboxes.sync(ACCOUNT, "INBOX")).recent_uids == frozenset()  # \Recent: one session
    assert await env.mailboxes.read_message(ACCOUNT, "INBOX", 2) == MESSAGE + b"1"
    junk = delivery.deliver([ACCOUNT], MESSAGE, folder="Junk")
    assert await env.mailboxes.deliver_indexed(ACCOUNT, "Junk", junk) == [1]
    assert (await env.mailboxes.folder(ACCOUNT, "Junk")) is not None
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_a_sync_racing_delivery_indexes_the_file_once(env: Env) -> None:
    delivery = MaildirStore(env.root, "mx.example.org")
    await env.mailboxes.ensure_account(ACCOUNT)
    [path] = delivery.deliver([ACCOUNT], MESSAGE)
    snapshot = await env.mailboxes.sync(ACCOUNT, "INBOX")  # sees the file first (and moves it)
    assert [m.uid for m in snapshot.messages] == [1]
    assert await env.mailboxes.deliver_indexed(ACCOUNT, "INBOX", [path]) == [1]
    await assert_consistent(env.mailboxes, ACCOUNT, "INBOX")


async def test_folders_create_nested_rename_and_delete(env: Env) -> None:
    await env.mailboxes.ensure_account(ACCOUNT)
    await env.mailboxes.create_folder(ACCOUNT, "Projects/Été/2024")
    names = [f.name for f in await env.mailboxes.list_folders(ACCOUNT)]
    assert {"Projects", "Projects/Été", "Projects/Été/2024"} <= set(names)
    assert (env.folder_dir() / ".Projects.&AMk-t&AOk-.2024" / "cur").is_dir()
    info = await env.mailboxes.folder(ACCOUNT, "Projects")
    assert info is not None and info.has_children
    for bad in ("INBOX", "inbox", "Sent", "a.b", "../x", "x/../../y", ""):
        with pytest.raises(FolderError):
            await env.mailboxes.create_folder(ACCOUNT, bad)
    with pytest.raises(FolderError):
        await env.mailboxes.delete_folder(ACCOUNT, "Projects")  # has children (as Dovecot)
    with pytest.raises(FolderError):
        await env.mailboxes.delete_folder(ACCOUNT, "INBOX")
    await env.mailboxes.append(ACCOUNT, "Projects/Été", MESSAGE)
    await env.mailboxes.rename_folder(ACCOUNT, "Projects", "Work/Old")
    names = [f.name for f in await env.mailboxes.list_folders(ACCOUNT)]
    assert "Projects" not in names and {"Work", "Work/Old", "Work/Old/Été", "Work/Old/Été/2024"} <= set(names)
    assert await env.mailboxes.read_message(ACCOUNT, "Work/Old/Été", 1) == MESSAGE
    with pytest.raises(FolderError):
        await env.mailboxes.rename_folder(ACCOUNT, "Work", "Sent")
    old = (await env.mailboxes.folder(ACCOUNT, "Work/Old/Été/2024"))
    assert old is not None
    await env.mailboxes.delete_folder(ACCOUNT, "Work/Old/Été/2024")
    assert await env.mailboxes.folder(ACCOUNT, "Work/Old/Été/2024") is None
    assert not (env.folder_dir() / ".Work.Old.&AMk-t&AOk-.2024").exists()
    again = await env.mailboxes.create_folder(ACCOUNT, "Work/Old/Été/2024")
    assert again.uidvalidity != old.uidvalidity and again.messages == 0
    with pytest.raises(FolderError):
        await env.mailboxes.snapshot(ACCOUNT, "Nowhere")


async def test_renaming_inbox_moves_its_messages(env: Env) -> None:
    await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE, ["\\Seen"])
    await env.mailboxes.rename_folder(ACCOUNT, "INBOX", "Old Inbox")
    assert (await env.mailboxes.snapshot(ACCOUNT, "INBOX")).messages == []
    [message] = (await env.mailboxes.snapshot(ACCOUNT, "Old Inbox")).messages
    assert message.flags == frozenset({"\\Seen"})


async def test_subscriptions(env: Env) -> None:
    await env.mailboxes.set_subscribed(ACCOUNT, "inbox", True)
    await env.mailboxes.set_subscribed(ACCOUNT, "Later", True)
    assert await env.mailboxes.subscriptions(ACCOUNT) == ["INBOX", "Later"]
    await env.mailboxes.set_subscribed(ACCOUNT, "Later", False)
    assert await env.mailboxes.subscriptions(ACCOUNT) == ["INBOX"]


async def test_create_with_a_special_use(env: Env) -> None:
    info = await env.mailboxes.create_folder(ACCOUNT, "Old mail", "\\archive")  # RFC 6154 CREATE-SPECIAL-USE
    assert info.special_use == "\\Archive"
    with pytest.raises(FolderError):
        await env.mailboxes.create_folder(ACCOUNT, "Everything", "\\All")  # virtual: not offered


async def test_an_existing_maildir_is_indexed_by_ensure_account(env: Env) -> None:
    delivery = MaildirStore(env.root, "mx.example.org")
    delivery.deliver([ACCOUNT], MESSAGE)
    delivery.deliver([ACCOUNT], MESSAGE, folder="Lists")  # mail that came before the index
    await env.mailboxes.ensure_account(ACCOUNT)
    assert len((await env.mailboxes.sync(ACCOUNT, "INBOX")).messages) == 1
    assert len((await env.mailboxes.sync(ACCOUNT, "Lists")).messages) == 1


async def test_deliver_indexed_takes_only_files_of_that_folder(env: Env) -> None:
    delivery = MaildirStore(env.root, "mx.example.org")
    await env.mailboxes.ensure_account(ACCOUNT)
    [path] = delivery.deliver([ACCOUNT], MESSAGE, folder="Junk")
    with pytest.raises(ValueError):
        await env.mailboxes.deliver_indexed(ACCOUNT, "INBOX", [path])


async def test_message_paths_of_many_messages(env: Env) -> None:
    for i in range(3):
        await env.mailboxes.append(ACCOUNT, "INBOX", MESSAGE + bytes([48 + i]))
    await env.mailboxes.store_flags(ACCOUNT, "INBOX", [2], "add", ["\\Deleted"])
    await env.mailboxes.expunge(ACCOUNT, "INBOX")
    paths = await env.mailboxes.message_paths(ACCOUNT, "INBOX", [1, 2, 3, 9])
    assert sorted(paths) == [1, 3] and paths[3].read_bytes() == MESSAGE + b"2"
    assert await env.mailboxes.message_path(ACCOUNT, "INBOX", 1) == paths[1]
