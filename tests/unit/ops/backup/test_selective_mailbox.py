"""``--only mailbox``: archived folders merged into the live mailbox through the mailbox store, on a
real data directory (SQLite store, Maildir files) and real archives in the spec's format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardmail.mailbox import MailboxStore
from hardmail.ops.backup.archive import new_identity
from hardmail.ops.backup.selective import SelectiveError, restore_selective
from support.selective_archive import Server, config_for, open_server, write_archive

ALICE = "alice@example.test"
PASSWORD = "correct horse battery staple"
WHEN = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


def _message(n: int, size: int = 0) -> bytes:
    return (f"From: bob@example.test\r\nSubject: message {n}\r\n\r\nbody {n}\r\n" + "x" * size).encode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    opened = await open_server(config_for(tmp_path / "data"))
    await opened.admin.add_domain("example.test")
    await opened.admin.add_account(ALICE, PASSWORD)
    try:
        yield opened
    finally:
        await opened.store.close()


async def _fill(mailboxes: MailboxStore) -> None:
    await mailboxes.create_folder(ALICE, "Work/2024")
    for n in range(1, 6):
        flags = ["\\Seen", "$Label1"] if n % 2 else ["\\Flagged"]
        await mailboxes.append(ALICE, "INBOX", _message(n), flags, WHEN)
    for n in range(10, 13):
        await mailboxes.append(ALICE, "Work/2024", _message(n), ["\\Answered"], WHEN)


async def _contents(mailboxes: MailboxStore, folder: str) -> dict[bytes, tuple[int, frozenset[str], datetime]]:
    snapshot = await mailboxes.sync(ALICE, folder, claim_recent=False)
    found = {}
    for record in snapshot.messages:
        data = await mailboxes.read_message(ALICE, folder, record.uid)
        assert data is not None
        found[data] = (record.uid, record.flags, record.internaldate)
    return found


async def _expunge(mailboxes: MailboxStore, folder: str, uids: list[int]) -> None:
    await mailboxes.store_flags(ALICE, folder, uids, "add", ["\\Deleted"])
    await mailboxes.expunge(ALICE, folder, uids)


async def test_expunged_messages_come_back_with_their_flags_and_no_duplicate(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    before = await _contents(server.mailboxes, "INBOX")
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups")
    await _expunge(server.mailboxes, "INBOX", [2, 3])
    await server.mailboxes.append(ALICE, "INBOX", _message(99), [], WHEN)  # arrived after the backup: stays

    seen: list[tuple[str, int, int]] = []
    report = await restore_selective(server.config, archive, "mailbox", ALICE,
                                     progress=lambda phase, done, total: seen.append((phase, done, total)))

    after = await _contents(server.mailboxes, "INBOX")
    assert set(after) == set(before) | {_message(99)}
    restoring = [(done, total) for phase, done, total in seen if phase == f"restoring {ALICE}"]
    assert restoring[-1] == (len(_message(2)) + len(_message(3)),) * 2
    assert any(phase.startswith("reading hardmail-") for phase, _, _ in seen)
    assert len(after) == len(before) + 1  # nothing twice
    for data, (uid, flags, when) in before.items():
        assert (after[data][1], after[data][2]) == (flags, when)
        if uid in (2, 3):
            assert after[data][0] > 6  # below UIDNEXT: clients may have seen 2 and 3 expunged, new UIDs
        else:
            assert after[data][0] == uid  # the live ones were not touched
    assert (report.messages_added, report.messages_kept_uid, report.messages_present) == (2, 0, 6)
    assert report.folders_created == 0
    assert any("2 messages added (0 with their archived UIDs, 2 with new UIDs), 6 already there" in line
               for line in report.lines())


async def test_a_deleted_folder_comes_back_with_its_uidvalidity_and_uids(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    await _expunge(server.mailboxes, "Work/2024", [3])  # UIDNEXT 4 with 2 messages: UID 3 must not be reused
    old = await server.mailboxes.folder(ALICE, "Work/2024")
    before = await _contents(server.mailboxes, "Work/2024")
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups")
    await server.mailboxes.delete_folder(ALICE, "Work/2024")
    await server.mailboxes.create_folder(ALICE, "Later")  # the account's UIDVALIDITY moved on

    report = await restore_selective(server.config, archive, "mailbox", ALICE)

    again = await server.mailboxes.folder(ALICE, "Work/2024")
    assert old is not None and again is not None
    assert again.uidvalidity == old.uidvalidity
    assert again.uidnext >= old.uidnext
    assert again.highestmodseq > old.highestmodseq
    assert await _contents(server.mailboxes, "Work/2024") == before
    assert (report.folders_created, report.messages_kept_uid) == (1, 2)
    await server.mailboxes.append(ALICE, "Work/2024", _message(50), [], WHEN)
    assert max(uid for uid, _, _ in (await _contents(server.mailboxes, "Work/2024")).values()) == old.uidnext


async def test_as_folder_restores_everything_under_new_folders(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    inbox = await _contents(server.mailboxes, "INBOX")
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups")

    report = await restore_selective(server.config, archive, "mailbox", ALICE, as_folder="Restored")

    live_inbox = await server.mailboxes.folder(ALICE, "INBOX")
    restored = await server.mailboxes.folder(ALICE, "Restored/INBOX")
    assert live_inbox is not None and restored is not None
    assert restored.uidvalidity != live_inbox.uidvalidity
    assert restored.special_use is None and restored.subscribed
    copied = await _contents(server.mailboxes, "Restored/INBOX")
    assert {data: (flags, when) for data, (_, flags, when) in copied.items()} == {
        data: (flags, when) for data, (_, flags, when) in inbox.items()}
    assert len(await _contents(server.mailboxes, "Restored/Work/2024")) == 3
    sent = await server.mailboxes.folder(ALICE, "Restored/Sent")
    assert sent is not None and sent.special_use is None  # the live Sent stays the \Sent folder
    assert report.messages_added == 8

    again = await restore_selective(server.config, archive, "mailbox", ALICE, as_folder="Restored")
    assert (again.messages_added, again.messages_present) == (0, 8)


async def test_an_account_missing_live_is_refused_with_what_to_do(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups")
    await server.admin.remove_account(ALICE)
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(server.config, archive, "mailbox", ALICE)
    assert "no account alice@example.test" in raised.value.message
    assert "--only domain example.test" in raised.value.hint and "hardmail account add" in raised.value.hint


async def test_over_quota_is_a_warning_and_the_messages_are_restored(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups")
    await _expunge(server.mailboxes, "INBOX", [1, 2, 3, 4, 5])
    await server.mailboxes.set_quota(ALICE, None, 4)
    report = await restore_selective(server.config, archive, "mailbox", ALICE)
    assert report.messages_added == 5
    assert (await server.mailboxes.quota(ALICE)).messages_used == 8
    assert any("over its quota" in warning for warning in report.warnings)


async def test_an_incremental_chain_and_a_renamed_file(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    backups = tmp_path / "backups"
    full, full_manifest = write_archive(server.config.data_dir, backups)
    await server.mailboxes.store_flags(ALICE, "INBOX", [2], "add", ["\\Seen"])  # renames the file
    await server.mailboxes.append(ALICE, "INBOX", _message(7), ["\\Draft"], WHEN)
    before = await _contents(server.mailboxes, "INBOX")
    incremental, manifest = write_archive(server.config.data_dir, backups, parent=full_manifest)
    renamed = [e for e in manifest.files if e.archive == full_manifest.name and e.member != e.path]
    assert renamed  # the chain is exercised: bytes of the full under their old name
    await _expunge(server.mailboxes, "INBOX", [1, 2, 3, 4, 5, 6])

    report = await restore_selective(server.config, incremental, "mailbox", ALICE)

    after = await _contents(server.mailboxes, "INBOX")
    assert {d: f for d, (_, f, _) in after.items()} == {d: f for d, (_, f, _) in before.items()}
    assert report.messages_added == 6

    full.unlink()
    uids = [uid for uid, _, _ in after.values()]
    await _expunge(server.mailboxes, "INBOX", uids)
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(server.config, incremental, "mailbox", ALICE)
    assert full_manifest.name in raised.value.message


async def test_an_encrypted_archive_needs_its_identity(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    secret, recipient = new_identity()
    identity = tmp_path / "backup.key"
    identity.write_text(secret + "\n")
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups", recipients=[recipient])
    await _expunge(server.mailboxes, "INBOX", [1])
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(server.config, archive, "mailbox", ALICE)
    assert "identity" in raised.value.message
    report = await restore_selective(server.config, archive, "mailbox", ALICE, identities=[identity])
    assert report.messages_added == 1


async def test_a_damaged_message_file_stops_the_restore_before_any_change(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    archive, manifest = write_archive(server.config.data_dir, tmp_path / "backups")
    await _expunge(server.mailboxes, "INBOX", [1, 2])
    bad = {e.member for e in manifest.files if "/cur/" in e.path and e.path.startswith("files/mail/")}
    damaged = _rewrite_with_flipped_byte(archive, bad, tmp_path / "damaged")
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(server.config, damaged, "mailbox", ALICE)
    assert "does not match its manifest" in raised.value.message
    assert len((await server.mailboxes.sync(ALICE, "INBOX")).messages) == 3


async def test_a_logical_export_database_is_read_too(server: Server, tmp_path: Path) -> None:
    await _fill(server.mailboxes)
    before = await _contents(server.mailboxes, "INBOX")
    archive, _ = write_archive(server.config.data_dir, tmp_path / "backups", database="tables")
    await _expunge(server.mailboxes, "INBOX", [4])
    report = await restore_selective(server.config, archive, "mailbox", ALICE)
    assert report.messages_added == 1
    after = await _contents(server.mailboxes, "INBOX")
    assert {d: f for d, (_, f, _) in after.items()} == {d: f for d, (_, f, _) in before.items()}


def _rewrite_with_flipped_byte(archive: Path, members: set[str], into: Path) -> Path:
    """A copy of ``archive`` whose ``members`` have one byte flipped each (its manifest unchanged)."""
    from hardmail.ops.backup.archive import ArchiveWriter, iter_members

    into.mkdir()
    target = into / archive.name
    writer = ArchiveWriter(target)
    for info, stream in iter_members(archive):
        data = bytearray(stream.read())
        if info.name in members:
            data[-3] ^= 0x01
        writer.add_bytes(info.name, bytes(data), info.mode, info.mtime)
    writer.close()
    return target
