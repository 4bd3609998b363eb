"""The check ``create_backup`` makes of the archive it writes (``verify.verify_created``): the
archive read back while it is written, trusted by its zstd content checksum (no second SHA-256),
and the earlier archives of an incremental's chain taken as their records say, not read: damage
read back is a failure, a backup that fails midway leaves no reader behind, and an earlier archive
that changed, failed its own verification or was never verified is not taken on trust."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from hardmail.ops.backup import file_phase, tarstream
from hardmail.ops.backup.archive import new_identity
from hardmail.ops.backup.catalog import BackupError, read_record, sidecar_path
from hardmail.ops.backup.create import BackupRequest, BackupResult, create_backup
from unit.ops.backup.create_helpers import ALICE, DataDir


async def _backup(data: DataDir, tmp_path: Path, **options: object) -> BackupResult:
    return await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", **options))  # type: ignore[arg-type]


def _readers() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "hardmail-read-back"]


async def test_an_archive_read_back_while_written_verifies(data: DataDir, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real_read = tarstream.GrowingFile.read

    def counting_read(self: tarstream.GrowingFile, size: int = -1) -> bytes:
        chunk = real_read(self, size)
        seen.append(len(chunk))
        return chunk

    monkeypatch.setattr(tarstream.GrowingFile, "read", counting_read)
    result = await _backup(data, tmp_path)
    assert result.record.verify is not None and result.record.verify.ok, result.record.verify
    assert sum(seen) == result.archive_path.stat().st_size  # the whole file was read back through it
    assert not _readers()


async def test_damage_in_what_is_read_back_fails_the_verification(data: DataDir, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte that reads back other than it was written (a disk or memory fault): the zstd
    content checksum (or the decoding) catches it without a SHA-256 of each member."""
    real_read = tarstream.GrowingFile.read
    flipped: list[int] = []

    def damaging_read(self: tarstream.GrowingFile, size: int = -1) -> bytes:
        chunk = real_read(self, size)
        if chunk and not flipped and len(chunk) > 600:
            flipped.append(len(chunk))
            middle = len(chunk) // 2
            return chunk[:middle] + bytes([chunk[middle] ^ 0x10]) + chunk[middle + 1:]
        return chunk

    monkeypatch.setattr(tarstream.GrowingFile, "read", damaging_read)
    result = await _backup(data, tmp_path)
    assert flipped
    assert result.record.verify is not None and not result.record.verify.ok
    assert any("damaged" in line or "checksum" in line for line in result.record.verify.failures), \
        result.record.verify.failures
    assert not _readers()


async def test_a_backup_that_fails_midway_leaves_no_reader_and_no_archive(data: DataDir, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: object) -> list[object]:
        raise BackupError("the configuration file vanished", "")

    monkeypatch.setattr(file_phase.FilePhase, "add_config_and_external", fail)
    with pytest.raises(BackupError, match="vanished"):
        await _backup(data, tmp_path)
    assert not _readers()
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith("hardmail-")]


@pytest.mark.parametrize("verify", [False, True])  # hashed by the writer; by the reader that follows it
async def test_the_sidecar_hash_is_that_of_the_file_written(data: DataDir, tmp_path: Path, verify: bool) -> None:
    import hashlib

    result = await _backup(data, tmp_path, verify=verify)
    assert result.record.archive_sha256 == hashlib.sha256(result.archive_path.read_bytes()).hexdigest()
    assert result.record.archive_size == result.archive_path.stat().st_size
    assert repr(result).startswith("BackupResult(") and len(repr(result)) < 200


# --- the earlier archives of an incremental --------------------------------------------------

async def _full_then_new_mail(data: DataDir, tmp_path: Path, **options: object) -> BackupResult:
    full = await _backup(data, tmp_path, **options)
    await data.append(ALICE, "INBOX", 900)
    return full


async def test_an_incremental_checks_its_full_archive_by_record_without_reading_it(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = await _full_then_new_mail(data, tmp_path)
    opened: list[str] = []
    real_open = tarstream.open_tar

    def recording_open(plain: Path, shown: str | None = None):  # type: ignore[no-untyped-def]
        opened.append(plain.name)
        return real_open(plain, shown)

    monkeypatch.setattr("hardmail.ops.backup.verify.open_tar", recording_open)
    incremental = await _backup(data, tmp_path, incremental=True)
    assert incremental.manifest.kind == "incremental"
    assert incremental.record.verify is not None and incremental.record.verify.ok, incremental.record.verify
    assert full.archive_path.name not in opened


async def test_an_earlier_archive_cut_short_since_it_was_made_fails_the_incremental(
        data: DataDir, tmp_path: Path) -> None:
    full = await _full_then_new_mail(data, tmp_path)
    with open(full.archive_path, "r+b") as handle:
        handle.truncate(full.record.archive_size - 100)
    incremental = await _backup(data, tmp_path, incremental=True)
    assert incremental.record.verify is not None and not incremental.record.verify.ok
    assert any("cut short" in line for line in incremental.record.verify.failures), incremental.record.verify


async def test_an_earlier_archive_whose_record_says_it_failed_fails_the_incremental(
        data: DataDir, tmp_path: Path) -> None:
    full = await _full_then_new_mail(data, tmp_path)
    first = await _backup(data, tmp_path, incremental=True)  # builds on the full archive
    sidecar = sidecar_path(full.archive_path.parent, full.record.name)
    value = json.loads(sidecar.read_text())
    value["verify"] = {"ok": False, "at": value["verify"]["at"], "failures": ["found damaged later"]}
    sidecar.write_text(json.dumps(value))
    second = await _backup(data, tmp_path, incremental=True)  # builds on `first`, whose chain holds the full
    assert second.manifest.chain == (full.record.name, first.record.name, second.record.name)
    assert second.record.verify is not None and not second.record.verify.ok
    assert any("failed its own verification" in line for line in second.record.verify.failures)


async def test_an_earlier_archive_never_verified_is_read_in_full(data: DataDir, tmp_path: Path) -> None:
    full = await _full_then_new_mail(data, tmp_path, verify=False)
    data_bytes = bytearray(full.archive_path.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0x01
    full.archive_path.write_bytes(bytes(data_bytes))  # same size: only reading it finds the damage
    incremental = await _backup(data, tmp_path, incremental=True)
    assert incremental.record.verify is not None and not incremental.record.verify.ok
    assert read_record(sidecar_path(full.archive_path.parent, full.record.name)).verify is None  # type: ignore[union-attr]


async def test_an_encrypted_earlier_archive_never_verified_leaves_the_incremental_unverified(
        data: DataDir, tmp_path: Path) -> None:
    recipient = new_identity()[1]
    await _full_then_new_mail(data, tmp_path, verify=False, recipients=(recipient,))
    incremental = await _backup(data, tmp_path, incremental=True, recipients=(recipient,))
    assert incremental.manifest.kind == "incremental"
    assert incremental.record.verify is None and "encrypted" in incremental.verify_skipped


async def test_a_read_back_that_breaks_down_is_a_failed_verification_not_a_pass(
        data: DataDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scratch copy of the database cannot be written (a full /tmp): the reading thread's
    error reaches the check, which fails, instead of a read that stopped short passing."""
    import errno
    import os

    from hardmail.ops.backup import verify

    real_digest = verify._digest

    def full_disk(chunks, counter, hashing, out=None):  # type: ignore[no-untyped-def]
        if out is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp")
        return real_digest(chunks, counter, hashing, out)

    monkeypatch.setattr(verify, "_digest", full_disk)
    result = await _backup(data, tmp_path)
    assert result.record.verify is not None and not result.record.verify.ok
    assert any("No space left" in line for line in result.record.verify.failures), result.record.verify
    assert not _readers()
