"""The catalog: sidecar records, listing a directory, the chain of an archive, the parent an
incremental backup builds on, and the state directory's manifest copies."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup.catalog import (
    ArchiveRecord,
    BackupError,
    VerifyStatus,
    archive_path,
    chain_paths,
    default_destination,
    load_manifest_copy,
    newest_parent,
    read_records,
    record_for,
    save_manifest_copy,
    sidecar_path,
    state_dir,
    write_record,
)
from hardmail.ops.backup.manifest import DatabaseInfo, FileEntry, Manifest

FULL = "hardmail-20261201T030000000000Z-full"
INCR = "hardmail-20261202T030000000000Z-incr"
INCR2 = "hardmail-20261203T030000000000Z-incr"


def _record(name: str, chain: tuple[str, ...], encrypted: bool = False, verify: VerifyStatus | None = None,
            created: str = "") -> ArchiveRecord:
    suffix = ".tar.zst.age" if encrypted else ".tar.zst"
    return ArchiveRecord(
        name=name, kind="full" if len(chain) == 1 else "incremental", parent=chain[-2] if len(chain) > 1 else None,
        chain=chain, created_at=created or f"2026-12-0{name[16]}T03:00:00+00:00", hardmail_version="0.1.0",
        schema_revision="r1", archive_file=name + suffix, archive_size=10, archive_sha256="0" * 64,
        encrypted=encrypted, recipients=("age1xyz",) if encrypted else (), file_count=3, stored_bytes=100,
        verify=verify)


def _manifest(name: str, chain: tuple[str, ...], data_dir: Path) -> Manifest:
    return Manifest(name=name, kind="full" if len(chain) == 1 else "incremental",
                    parent=chain[-2] if len(chain) > 1 else None, chain=chain, created_at="2026-12-01T03:00:00+00:00",
                    hardmail_version="0.1.0", schema_revision="r1", database=DatabaseInfo("sqlite", "database/x"),
                    data_dir=str(data_dir), config_file=None,
                    files=(FileEntry("files/server.key", 1, "0" * 64, 0o600, 1, name, "files/server.key"),))


def _archive(directory: Path, record: ArchiveRecord) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / record.archive_file
    path.write_bytes(b"archive")
    write_record(directory, record)
    return path


def test_a_record_round_trips_through_its_sidecar(tmp_path: Path) -> None:
    record = _record(INCR, (FULL, INCR), encrypted=True, verify=VerifyStatus(False, "2026-12-02T03:01:00+00:00",
                                                                               ("a flipped byte",)))
    path = _archive(tmp_path, record)
    assert record_for(path) == record
    assert record.verify_status == "failed" and replace(record, verify=None).verify_status == "unverified"
    assert oct(sidecar_path(tmp_path, INCR).stat().st_mode & 0o777) == "0o600"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_records_are_listed_oldest_first_and_other_files_ignored(tmp_path: Path) -> None:
    for record in (_record(INCR, (FULL, INCR)), _record(FULL, (FULL,))):
        _archive(tmp_path, record)
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "hardmail-junk.json").write_text("not json")
    (tmp_path / "hardmail-20261209T000000000000Z-full.json").write_text('{"format": "other"}')
    assert [r.name for r in read_records(tmp_path)] == [FULL, INCR]
    assert read_records(tmp_path / "missing") == []


def test_a_record_whose_name_does_not_match_its_file_is_ignored(tmp_path: Path) -> None:
    _archive(tmp_path, _record(FULL, (FULL,)))
    os.rename(sidecar_path(tmp_path, FULL), sidecar_path(tmp_path, INCR))
    assert read_records(tmp_path) == []


def test_the_chain_of_an_incremental_archive(tmp_path: Path) -> None:
    full = _archive(tmp_path, _record(FULL, (FULL,), encrypted=True))
    incr = _archive(tmp_path, _record(INCR, (FULL, INCR)))
    last = _archive(tmp_path, _record(INCR2, (FULL, INCR, INCR2)))
    assert chain_paths(last) == [full, incr, last]
    assert chain_paths(full) == [full]
    assert archive_path(tmp_path, FULL) == full
    incr.unlink()
    with pytest.raises(BackupError, match=f"the archive {INCR} of the chain of {INCR2} is missing") as missing:
        chain_paths(last)
    assert "copy every archive" in missing.value.hint


def test_a_chain_needs_the_sidecar_of_an_incremental_archive(tmp_path: Path) -> None:
    lone_full = tmp_path / f"{FULL}.tar.zst"
    lone_full.write_bytes(b"x")
    assert chain_paths(lone_full) == [lone_full]
    lone_incr = tmp_path / f"{INCR}.tar.zst"
    lone_incr.write_bytes(b"x")
    with pytest.raises(BackupError, match="has no record"):
        chain_paths(lone_incr)
    with pytest.raises(BackupError, match="not a hardmail backup archive"):
        chain_paths(tmp_path / "other.tar")


def test_the_parent_of_an_incremental_backup(tmp_path: Path) -> None:
    data_dir, destination = tmp_path / "data", tmp_path / "backups"
    _archive(destination, _record(FULL, (FULL,)))
    assert newest_parent(destination, data_dir) is None  # no manifest copy: cannot follow it
    save_manifest_copy(data_dir, _manifest(FULL, (FULL,), data_dir))
    _archive(destination, _record(INCR, (FULL, INCR)))
    save_manifest_copy(data_dir, _manifest(INCR, (FULL, INCR), data_dir))
    parent = newest_parent(destination, data_dir)
    assert parent is not None and parent.record.name == INCR and [p.name for p in parent.paths] == [
        f"{FULL}.tar.zst", f"{INCR}.tar.zst"]
    write_record(destination, _record(INCR, (FULL, INCR), verify=VerifyStatus(False, "x", ("bad",))))
    parent = newest_parent(destination, data_dir)
    assert parent is not None and parent.record.name == FULL  # never on one that failed verification
    (destination / f"{FULL}.tar.zst").unlink()
    assert newest_parent(destination, data_dir) is None  # its chain is broken


def test_a_manifest_copy_of_another_data_directory_is_no_parent(tmp_path: Path) -> None:
    data_dir, destination = tmp_path / "data", tmp_path / "backups"
    _archive(destination, _record(FULL, (FULL,)))
    save_manifest_copy(data_dir, _manifest(FULL, (FULL,), tmp_path / "another"))
    assert newest_parent(destination, data_dir) is None


def test_manifest_copies_live_in_the_private_state_directory(tmp_path: Path) -> None:
    manifest = _manifest(FULL, (FULL,), tmp_path)
    path = save_manifest_copy(tmp_path, manifest)
    assert path.parent == state_dir(tmp_path) / "manifests"
    assert oct(state_dir(tmp_path).stat().st_mode & 0o777) == "0o700"
    assert load_manifest_copy(tmp_path, FULL) == manifest
    assert load_manifest_copy(tmp_path, INCR) is None
    path.write_text("{damaged")
    assert load_manifest_copy(tmp_path, FULL) is None
    assert default_destination(tmp_path) == tmp_path / "backups"
