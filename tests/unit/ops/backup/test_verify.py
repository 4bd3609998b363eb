"""``verify_archive``: a sound archive (and chain) passes; each kind of damage is one clear
failure line: a flipped byte, a missing member, a truncated file, a member outside the manifest,
a missing archive of the chain, a database copy that fails its checks, an index entry without
its file and a file without its index entry, a queue entry without its spool files."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup.manifest import MANIFEST_MEMBER, Manifest
from hardmail.ops.backup.verify import MAX_FAILURES, verify_archive
from support.backup_archives import (
    ALICE,
    SampleData,
    add_member,
    build_archive,
    drop_member,
    flip_file_byte,
    flip_member_byte,
    make_data_dir,
    message_entries,
    rewrite_archive,
    truncate_file,
)


@pytest.fixture
async def sample(tmp_path: Path) -> SampleData:
    return await make_data_dir(tmp_path / "data")


def _build(sample: SampleData, tmp_path: Path, **options: object):  # type: ignore[no-untyped-def]
    return build_archive(sample.data_dir, tmp_path / "backups", **options)  # type: ignore[arg-type]


def test_a_sound_archive_verifies(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    report = verify_archive(built.path)
    assert report.failures == ()
    assert report.ok
    assert report.files_checked == len(built.manifest.files)
    assert report.messages_checked == sum(len(uids) for uids in sample.uids.values()) == len(
        message_entries(built.manifest))


def test_a_flipped_byte_in_a_message_is_named(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    victim = message_entries(built.manifest)[3].path
    flip_member_byte(built.path, victim)
    report = verify_archive(built.path)
    assert not report.ok
    assert report.failures == (f"{victim}: SHA-256 differs from the manifest",)
    assert report.summary == ("a file's SHA-256 differs from the manifest",)  # no file name: for the sidecar


def test_a_missing_member_is_named(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    victim = next(e.path for e in built.manifest.files if e.path.startswith("files/spool/queue/") and
                  e.path.endswith(".eml"))
    drop_member(built.path, victim)
    report = verify_archive(built.path)
    assert not report.ok
    assert f"{victim}: missing from archive {built.path.name}" in report.failures


def test_a_truncated_archive_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    truncate_file(built.path, 0.7)
    report = verify_archive(built.path)
    assert not report.ok
    assert len(report.failures) == 1
    assert "truncated" in report.failures[0]


def test_an_archive_cut_before_its_manifest_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    drop_member(built.path, MANIFEST_MEMBER)  # a clean end of stream, but no manifest
    report = verify_archive(built.path)
    assert report.failures == (f"{built.path.name}: archive truncated: it has no {MANIFEST_MEMBER}",)


def test_a_flipped_byte_in_the_compressed_file_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    flip_file_byte(built.path, 0.5)
    report = verify_archive(built.path)
    assert not report.ok
    assert report.failures


def test_a_member_outside_the_manifest_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    add_member(built.path, "files/smuggled.txt", b"not listed")
    report = verify_archive(built.path)
    assert report.failures == (f"files/smuggled.txt: in archive {built.path.name} but not in its manifest",)


def test_an_unsafe_member_name_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    add_member(built.path, "files/../../escape", b"x")
    report = verify_archive(built.path)
    assert any("unsafe name" in line for line in report.failures)


async def test_an_incremental_chain_verifies_and_a_missing_full_fails(sample: SampleData, tmp_path: Path) -> None:
    full = _build(sample, tmp_path)
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    assert incremental.manifest.kind == "incremental"
    assert any(e.archive == full.name for e in incremental.manifest.files)
    assert any(e.archive == full.name and e.member != e.path for e in incremental.manifest.files)  # renamed
    report = verify_archive(incremental.path)
    assert report.failures == ()
    full.path.unlink()
    report = verify_archive(incremental.path)
    assert not report.ok
    assert report.failures[0] == f"{full.name}: this archive of the chain is missing from {full.path.parent}"


async def test_damage_in_an_earlier_archive_of_the_chain_is_found(sample: SampleData, tmp_path: Path) -> None:
    full = _build(sample, tmp_path)
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    reused = next(e for e in incremental.manifest.files if e.archive == full.name and e.path.startswith("files/mail"))
    flip_member_byte(full.path, reused.member)
    report = verify_archive(incremental.path)
    assert f"{reused.member}: SHA-256 differs from the manifest" in report.failures  # against its own manifest
    assert f"{reused.path}: SHA-256 differs from the manifest" in report.failures  # and against this one


async def _change_mail(sample: SampleData) -> None:
    from hardmail.core.clock import SystemClock
    from hardmail.mailbox import MailboxStore
    from hardmail.store import open_store
    from support.backup_archives import HOSTNAME, message

    store = await open_store(sample.database_url)
    try:
        mailboxes = MailboxStore(sample.config.maildir_root, store.mailbox, HOSTNAME, SystemClock())
        uid = sample.uids[(ALICE, "INBOX")][1]
        await mailboxes.store_flags(ALICE, "INBOX", [uid], "add", ["\\Flagged", "\\Answered"])  # a rename
        added = await mailboxes.append(ALICE, "INBOX", message("after the full backup"), ["\\Seen"])
        sample.uids[(ALICE, "INBOX")].append(added.uid)
    finally:
        await store.close()


def test_an_encrypted_archive_needs_its_identity(sample: SampleData, tmp_path: Path) -> None:
    from hardmail.ops.backup.archive import new_identity

    secret, public = new_identity()
    identity = tmp_path / "backup.key"
    identity.write_text(f"# test identity\n{secret}\n")
    other = tmp_path / "other.key"
    other.write_text(new_identity()[0] + "\n")
    built = _build(sample, tmp_path, recipients=[public])
    assert built.path.name.endswith(".tar.zst.age")
    assert verify_archive(built.path, [identity]).ok
    without = verify_archive(built.path)
    assert not without.ok and "--identity" in without.failures[0]
    wrong = verify_archive(built.path, [other])
    assert not wrong.ok and "cannot decrypt" in wrong.failures[0]
    assert secret not in " ".join(without.failures + wrong.failures)


def test_an_index_entry_without_its_file_fails(sample: SampleData, tmp_path: Path) -> None:
    inbox = sample.data_dir / "mail" / "example.org" / "alice" / ".Archive.2024" / "cur"
    gone = sorted(inbox.iterdir())[0]
    gone.unlink()
    report = verify_archive(_build(sample, tmp_path).path)
    base = gone.name.partition(":2,")[0]
    assert len(report.failures) == 1
    assert report.failures[0].startswith(f"index entry {ALICE} Archive/2024 UID ")
    assert report.failures[0].endswith(
        f"its message file files/mail/example.org/alice/.Archive.2024/(cur|new)/{base} is not in the archive")


def test_a_message_file_without_its_index_entry_fails(sample: SampleData, tmp_path: Path) -> None:
    folder = sample.data_dir / "mail" / "example.org" / "alice" / ".&AMk-t&AOk-" / "new"
    folder.mkdir(exist_ok=True)
    (folder / "1700000000.M1P1.elsewhere").write_bytes(b"Subject: put there by hand\r\n\r\n")
    report = verify_archive(_build(sample, tmp_path).path)
    assert report.failures == (
        "files/mail/example.org/alice/.&AMk-t&AOk-/new/1700000000.M1P1.elsewhere: message file has no index entry",)


def test_queue_entries_and_spool_files_must_match(sample: SampleData, tmp_path: Path) -> None:
    [queue_id] = sample.queue_ids
    (sample.data_dir / "spool" / "queue" / f"{queue_id}.eml").unlink()
    orphan = "01ZZZZZZZZZZZZZZZZZZ"
    (sample.data_dir / "spool" / "queue" / f"{orphan}.json").write_text("{}")
    (sample.data_dir / "spool" / "queue" / f"{orphan}.eml").write_text("x")
    report = verify_archive(_build(sample, tmp_path).path)
    assert set(report.failures) == {
        f"queue entry {queue_id}: its spool message files/spool/queue/{queue_id}.eml is not in the archive",
        f"files/spool/queue/{orphan}.json: spool entry has no queue entry in the database",
    }


def test_a_database_at_another_revision_than_the_manifest_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)

    def other_revision(name: str, data: bytes) -> bytes:
        if name != MANIFEST_MEMBER:
            return data
        return replace(Manifest.from_json(data), schema_revision="0001").to_json()

    rewrite_archive(built.path, other_revision)
    report = verify_archive(built.path)
    assert len(report.failures) == 1
    assert report.failures[0].startswith("database/hardmail.db: is at schema revision ")
    assert report.failures[0].endswith(", the manifest says 0001")


def test_a_foreign_key_violation_in_the_database_copy_fails(sample: SampleData, tmp_path: Path) -> None:
    with sqlite3.connect(sample.data_dir / "hardmail.db") as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("INSERT INTO mailbox_messages (folder_id, uid, name, flags, modseq, internaldate, size, in_new) "
                   "VALUES (9999, 1, 'x', '', 1, 0, 1, 0)")
    report = verify_archive(_build(sample, tmp_path).path)
    [failure] = report.failures
    assert failure.startswith("database/hardmail.db: foreign key check: row ")
    assert failure.endswith(" of mailbox_messages refers to a missing row of mailbox_folders")


def test_a_database_copy_that_is_not_a_database_fails(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    garbage = b"this is not an SQLite file" * 100

    def replaced(name: str, data: bytes) -> bytes:
        if name == "database/hardmail.db":
            return garbage
        if name == MANIFEST_MEMBER:  # a manifest that agrees, so that only the database check can fail
            import hashlib

            manifest = Manifest.from_json(data)
            files = tuple(replace(e, size=len(garbage), sha256=hashlib.sha256(garbage).hexdigest())
                          if e.path == "database/hardmail.db" else e for e in manifest.files)
            return replace(manifest, files=files).to_json()
        return data

    rewrite_archive(built.path, replaced)
    report = verify_archive(built.path)
    assert len(report.failures) == 1
    assert report.failures[0].startswith("database/hardmail.db: is not a usable SQLite database")


def test_failures_are_capped_with_a_count_of_the_rest(sample: SampleData, tmp_path: Path) -> None:
    folder = sample.data_dir / "mail" / "example.org" / "bob" / "cur"
    for n in range(MAX_FAILURES + 25):
        (folder / f"17000{n:05d}.M1P1.stray:2,S").write_bytes(b"x")
    report = verify_archive(_build(sample, tmp_path).path)
    assert len(report.failures) == MAX_FAILURES + 1
    assert report.failures[-1] == "... and 25 more failures"
    assert report.summary == (f"{MAX_FAILURES + 25} times: a message file has no index entry",)


def test_a_sidecar_is_not_needed_and_its_hint_is_used(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path, sidecar=True)
    seen: list[tuple[str, int, int]] = []
    assert verify_archive(built.path, progress=lambda *args: seen.append(args)).ok
    record = json.loads((built.path.parent / f"{built.name}.json").read_text())
    assert seen and seen[-1][2] == record["stored_bytes"]
    (built.path.parent / f"{built.name}.json").unlink()
    assert verify_archive(built.path).ok
