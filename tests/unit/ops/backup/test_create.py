"""create_backup on a data directory made by the real mailbox store, delivery and queue: what a
full and an incremental archive hold, the database copy (UIDs, UIDVALIDITY, flags), the sidecar,
the manifest copy, the health state and the log events."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from hardmail.ops.backup.catalog import read_records, record_for, state_dir
from hardmail.ops.backup.create import BackupError, BackupRequest, create_backup
from hardmail.ops.backup.manifest import SIDECAR_SUFFIX
from unit.ops.backup.create_helpers import (
    ALICE,
    BOB,
    CUSTOM,
    NEVER_STORED,
    DataDir,
    archive_members,
    assert_consistent,
    build_data_dir,
    database_copy,
    manifest_of,
    message_files,
)


def _request(tmp_path: Path, **options: object) -> BackupRequest:
    return BackupRequest(destination=tmp_path / "backups", verify=False, **options)  # type: ignore[arg-type]


async def test_a_full_backup_stores_every_file_with_its_hash(data: DataDir, tmp_path: Path) -> None:
    result = await create_backup(data.config, _request(tmp_path))
    members = archive_members(result.archive_path)
    manifest = manifest_of(members)
    assert list(members)[-1] == "MANIFEST.json"
    assert manifest == result.manifest and manifest.kind == "full" and manifest.chain == (manifest.name,)
    for entry in manifest.files:
        assert entry.archive == manifest.name and entry.member == entry.path
        assert hashlib.sha256(members[entry.member]).hexdigest() == entry.sha256
        assert len(members[entry.member]) == entry.size
        if entry.path.startswith("files/"):
            assert (data.path / entry.path[len("files/"):]).read_bytes() == members[entry.member]
    paths = {entry.path for entry in manifest.files}
    on_disk = {f"files/{path.relative_to(data.path)}" for path in message_files(data.path)}
    assert on_disk and on_disk <= paths
    assert {"files/server.key", "files/dkim/example.org/state.json", "files/tls/self-signed.pem",
            "database/hardmail.db"} <= paths
    assert any(path.startswith("files/spool/queue/") and path.endswith(".eml") for path in paths)
    assert not {f"files/{rel}" for rel in NEVER_STORED} & paths
    assert not any(path.startswith("files/hardmail.db") for path in paths)
    assert manifest.database.kind == "sqlite" and manifest.schema_revision
    assert manifest.data_dir == str(data.path.resolve())


async def test_the_database_copy_keeps_uids_uidvalidity_and_flags(data: DataDir, tmp_path: Path) -> None:
    result = await create_backup(data.config, _request(tmp_path))
    members = archive_members(result.archive_path)
    copy = database_copy(members, tmp_path)
    for account, folder in ((ALICE, "INBOX"), (ALICE, CUSTOM), (BOB, "INBOX"), (BOB, "Junk")):
        live = await data.mailboxes.snapshot(account, folder)
        uidvalidity, uidnext, highestmodseq = copy.execute(
            "SELECT uidvalidity, uidnext, highestmodseq FROM mailbox_folders WHERE account = ? AND name = ?",
            (account, folder)).fetchone()
        assert (uidvalidity, uidnext, highestmodseq) == (live.info.uidvalidity, live.info.uidnext,
                                                          live.info.highestmodseq)
        rows = copy.execute("SELECT m.uid, m.flags FROM mailbox_messages m JOIN mailbox_folders f ON f.id = m.folder_id"
                            " WHERE f.account = ? AND f.name = ? ORDER BY m.uid", (account, folder)).fetchall()
        assert rows == [(m.uid, " ".join(sorted(m.flags))) for m in live.messages]
    assert_consistent(manifest_of(members), copy)
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)


async def test_the_sidecar_manifest_copy_and_health_are_written(data: DataDir, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardmail.events")
    result = await create_backup(data.config, _request(tmp_path))
    record = record_for(result.archive_path)
    assert record == result.record and read_records(tmp_path / "backups") == [record]
    assert record.archive_sha256 == hashlib.sha256(result.archive_path.read_bytes()).hexdigest()
    assert record.archive_size == result.archive_path.stat().st_size
    assert record.file_count == len(result.manifest.files) and not record.encrypted and record.verify is None
    sidecar = (tmp_path / "backups" / f"{record.name}{SIDECAR_SUFFIX}").read_text()
    assert ALICE not in sidecar and "mail/" not in sidecar  # never names or addresses
    assert (state_dir(data.path) / "manifests" / f"{record.name}.json").read_bytes() == result.manifest.to_json()
    health = json.loads((state_dir(data.path) / "health.json").read_text())
    assert health["last_result"] == "unverified" and health["last_archive"] == record.name
    assert oct((tmp_path / "backups").stat().st_mode & 0o777) == "0o700"
    assert oct(result.archive_path.stat().st_mode & 0o777) == "0o600"
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith(".hardmail-work-")]
    created = [json.loads(r.message) for r in caplog.records if '"backup.created"' in r.message]
    assert created and created[0]["name"] == record.name and created[0]["kind"] == "full"


async def test_an_incremental_backup_stores_only_what_changed(data: DataDir, tmp_path: Path) -> None:
    full = await create_backup(data.config, _request(tmp_path))
    new_uid = await data.append(ALICE, "INBOX", 500, ("\\Seen",))
    await data.mailboxes.store_flags(ALICE, "INBOX", [1], "add", ["\\Answered"])  # a rename, not new content
    result = await create_backup(data.config, _request(tmp_path, incremental=True))
    manifest = result.manifest
    assert manifest.kind == "incremental" and manifest.parent == full.manifest.name
    assert manifest.chain == (full.manifest.name, manifest.name)
    stored = {entry.path for entry in manifest.stored_here()}
    new_files = [p for p in stored if p.startswith("files/mail/")]
    assert len(new_files) == 1 and new_files[0].endswith(":2,S")
    assert {"database/hardmail.db", "files/server.key"} <= stored
    assert stored - set(new_files) == {"database/hardmail.db", "files/server.key"}
    inbox = "files/mail/example.org/alice/cur/"
    renamed = [e for e in manifest.files if e.path.endswith(":2,RS") and e.path.startswith(inbox)]
    assert len(renamed) == 1 and renamed[0].archive == full.manifest.name and renamed[0].member != renamed[0].path
    assert renamed[0].member in {e.path for e in full.manifest.files}
    members = archive_members(result.archive_path)
    assert set(members) == stored | {"MANIFEST.json"}
    copy = database_copy(members, tmp_path)
    assert copy.execute("SELECT COUNT(*) FROM mailbox_messages WHERE uid = ?", (new_uid,)).fetchone()[0] >= 1
    assert_consistent(manifest, copy)
    assert result.record.parent == full.record.name and result.record.chain == manifest.chain


async def test_an_incremental_without_an_earlier_archive_is_a_full_one(data: DataDir, tmp_path: Path) -> None:
    result = await create_backup(data.config, _request(tmp_path, incremental=True))
    assert result.manifest.kind == "full" and result.manifest.notes["incremental_without_parent"] == 1
    assert result.record.name.endswith("-full")


async def test_an_incremental_never_builds_on_an_archive_that_failed_verification(data: DataDir,
                                                                                   tmp_path: Path) -> None:
    from dataclasses import replace

    from hardmail.ops.backup.catalog import VerifyStatus, write_record

    full = await create_backup(data.config, _request(tmp_path))
    write_record(tmp_path / "backups", replace(full.record, verify=VerifyStatus(False, "now", ("flipped byte",))))
    result = await create_backup(data.config, _request(tmp_path, incremental=True))
    assert result.manifest.kind == "full"


async def test_the_configuration_and_external_tls_files_are_stored(tmp_path: Path) -> None:
    from unit.ops.backup.create_helpers import make_config

    made = await build_data_dir(tmp_path / "data")
    await made.close()
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "cert.pem").write_bytes(b"CERT")
    (outside / "key.pem").write_bytes(b"KEY")
    config_file = outside / "hardmail.toml"
    config_file.write_text("[server]\n")
    config = make_config(made.path, tls={"cert_file": str(outside / "cert.pem"), "key_file": str(outside / "key.pem")})
    result = await create_backup(config, _request(tmp_path, config_file=config_file))
    members = archive_members(result.archive_path)
    assert members["config/hardmail.toml"] == b"[server]\n"
    assert members["external/1-cert.pem"] == b"CERT" and members["external/2-key.pem"] == b"KEY"
    names = list(members)
    assert names.index("external/2-key.pem") < names.index("database/hardmail.db") < names.index("MANIFEST.json")
    assert result.manifest.config_file == str(config_file)


async def test_a_destination_inside_the_data_directory_is_not_backed_up(data: DataDir) -> None:
    first = await create_backup(data.config, BackupRequest(destination=data.path / "backups", verify=False))
    second = await create_backup(data.config, BackupRequest(destination=data.path / "elsewhere", verify=False))
    for result in (first, second):
        assert not any(e.path.startswith(("files/backups/", "files/elsewhere/")) for e in result.manifest.files)


async def test_the_data_directory_itself_is_refused_as_destination(data: DataDir) -> None:
    with pytest.raises(BackupError, match="cannot be the data directory"):
        await create_backup(data.config, BackupRequest(destination=data.path, verify=False))


async def test_a_bad_recipient_fails_before_anything_is_written(data: DataDir, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hardmail.events")
    with pytest.raises(BackupError, match="not an age recipient") as failed:
        await create_backup(data.config, _request(tmp_path, recipients=("age1notakey",)))
    assert "keygen" in failed.value.hint
    assert not (tmp_path / "backups").exists()
    health = json.loads((state_dir(data.path) / "health.json").read_text())
    assert health["last_result"] == "failed" and "recipient" in health["last_error"]
    [line] = [json.loads(r.message) for r in caplog.records if '"backup.failed"' in r.message]
    assert line["level"] == "error" and line["reason"] == "manual"


async def test_a_second_backup_into_the_same_directory_waits_for_none(data: DataDir, tmp_path: Path) -> None:
    import fcntl

    from hardmail.ops.backup.catalog import LOCK_NAME

    destination = tmp_path / "backups"
    destination.mkdir(mode=0o700)
    fd = os.open(destination / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(BackupError, match="another backup is being written"):
            await create_backup(data.config, _request(tmp_path))
    finally:
        os.close(fd)
    await create_backup(data.config, _request(tmp_path))


async def test_leftovers_of_a_crashed_backup_are_removed(data: DataDir, tmp_path: Path) -> None:
    destination = tmp_path / "backups"
    crashed = "hardmail-20260101T000000000000Z-full"
    (destination / f".hardmail-work-{crashed}").mkdir(parents=True)
    (destination / f".hardmail-work-{crashed}" / "hardmail.db").write_bytes(b"partial")
    (destination / f"{crashed}.tar.zst").write_bytes(b"partial plaintext")
    (destination / "hardmail-20250101T000000000000Z-full.tar.zst").write_bytes(b"an archive of its own")
    await create_backup(data.config, _request(tmp_path))
    names = {p.name for p in destination.iterdir()}
    assert f"{crashed}.tar.zst" not in names and f".hardmail-work-{crashed}" not in names
    assert "hardmail-20250101T000000000000Z-full.tar.zst" in names  # not ours to remove


async def test_a_missing_database_is_refused(tmp_path: Path) -> None:
    from unit.ops.backup.create_helpers import make_config

    (tmp_path / "empty").mkdir()
    with pytest.raises(BackupError, match="no database"):
        await create_backup(make_config(tmp_path / "empty"), _request(tmp_path))
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith("hardmail-")]


async def test_verification_runs_when_the_module_is_there(data: DataDir, tmp_path: Path) -> None:
    pytest.importorskip("hardmail.ops.backup.verify")
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups"))
    assert result.record.verify is not None and result.record.verify.ok, result.record.verify
    health = json.loads((state_dir(data.path) / "health.json").read_text())
    assert health["last_result"] == "ok"


def test_sqlite_snapshot_of_a_database_in_use(tmp_path: Path) -> None:
    from hardmail.ops.backup.snapshot import sqlite_snapshot

    live = sqlite3.connect(tmp_path / "live.db")
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("CREATE TABLE t (n INTEGER)")
    live.execute("INSERT INTO t VALUES (1)")
    live.commit()
    live.execute("BEGIN")
    live.execute("INSERT INTO t VALUES (2)")  # not committed: not in the snapshot
    sqlite_snapshot(tmp_path / "live.db", tmp_path / "copy.db")
    live.rollback()
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("SELECT n FROM t").fetchall() == [(1,)]
    assert not (tmp_path / "copy.db-wal").exists()


async def test_an_archive_that_fails_verification_is_kept_and_reported(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A byte flipped on the way to the disk (done here between writing and verifying, so the
    archive is read back once written, not while it is written)."""
    from types import SimpleNamespace

    from hardmail.ops.backup import verify

    def damage_then_verify(archive: Path, *args: object, **kwargs: object) -> verify.VerifyReport:
        data_bytes = bytearray(archive.read_bytes())
        data_bytes[len(data_bytes) // 2] ^= 0xFF
        archive.write_bytes(bytes(data_bytes))
        return verify.verify_created(archive, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("hardmail.ops.backup.create._verify_module",
                        lambda: SimpleNamespace(verify_created=damage_then_verify, CannotVerify=verify.CannotVerify,
                                                ReadBack=lambda *args: None))
    caplog.set_level(logging.INFO, logger="hardmail.events")
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups"))
    assert result.record.verify is not None and not result.record.verify.ok and result.record.verify.failures
    assert record_for(result.archive_path) == result.record and result.record.verify_status == "failed"
    health = json.loads((state_dir(data.path) / "health.json").read_text())
    assert health["last_result"] == "unverified" and "verification" in health["last_error"]
    failed = [json.loads(r.message) for r in caplog.records if '"backup.failed"' in r.message]
    assert failed and failed[0]["level"] == "error" and failed[0]["name"] == result.record.name
    monkeypatch.undo()
    again = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", incremental=True))
    assert again.manifest.kind == "full"  # nothing is built on it


def test_the_size_a_maildir_name_states() -> None:
    from hardmail.ops.backup.sources import named_size

    assert named_size("1796313924.M1P2Q3.mx.example.org,S=1234") == 1234
    assert named_size("1796313924.M1P2Q3.mx.example.org,S=12,W=14") is None  # not the last field: stat it
    assert named_size("1796313924.M1P2Q3.mx.example.org") is None
    assert named_size("x,S=") is None


async def test_a_message_whose_name_states_another_size_is_compared_by_its_real_size(
        data: DataDir, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    folder = data.mailboxes.folder_dir(BOB, "INBOX") / "cur"
    odd = folder / "1700000000.M1P1Q1.other-program,S=5:2,S"
    odd.write_bytes(b"From: a@b\r\n\r\nlonger than five bytes\r\n")
    old = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    os.utime(odd, (old, old))
    await data.mailboxes.reindex(BOB, "INBOX")
    full = await create_backup(data.config, _request(tmp_path))
    assert any(e.path.endswith(odd.name) for e in full.manifest.files)
    result = await create_backup(data.config, _request(tmp_path, incremental=True))
    [entry] = [e for e in result.manifest.files if e.path.endswith(odd.name)]
    assert entry.archive == full.record.name and entry.size == odd.stat().st_size
