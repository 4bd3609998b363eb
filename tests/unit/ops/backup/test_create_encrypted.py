"""Encrypted backups: the archive cannot be read without the age identity, can with it, leaves no
plaintext behind, and an incremental one follows it without the private key (manifest copy)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyrage
import pytest

from hardmail.ops.backup.archive import ArchiveError, new_identity
from hardmail.ops.backup.create import BackupError, BackupRequest, create_backup
from hardmail.ops.backup.health import read_health
from unit.ops.backup.create_helpers import ALICE, DataDir, archive_members, manifest_of


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, str]:
    identity, recipient = new_identity()
    path = tmp_path / "identity.txt"
    path.write_text(f"# test identity\n{identity}\n")
    return path, recipient


async def test_an_encrypted_archive_needs_its_identity(data: DataDir, tmp_path: Path,
                                                       key_pair: tuple[Path, str]) -> None:
    identity, recipient = key_pair
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False,
                                                            recipients=(recipient,)))
    assert result.archive_path.name.endswith(".tar.zst.age")
    assert sorted(p.name for p in (tmp_path / "backups").iterdir() if p.name.startswith("hardmail-")) == sorted(
        [result.archive_path.name, f"{result.record.name}.json"])  # the plaintext is gone
    assert result.record.encrypted and result.record.recipients == (recipient,)
    raw = result.archive_path.read_bytes()
    assert raw.startswith(b"age-encryption.org/v1") and b"alice" not in raw
    with pytest.raises(ArchiveError, match="no age identity"):
        archive_members(result.archive_path)
    other = tmp_path / "other.txt"
    other.write_text(new_identity()[0] + "\n")
    with pytest.raises(ArchiveError, match="cannot decrypt"):
        archive_members(result.archive_path, (other,))
    members = archive_members(result.archive_path, (identity,))
    assert manifest_of(members) == result.manifest
    assert any(name.startswith("files/mail/example.org/alice/") for name in members)
    assert oct(result.archive_path.stat().st_mode & 0o777) == "0o600"


async def test_recipients_from_a_file(data: DataDir, tmp_path: Path, key_pair: tuple[Path, str]) -> None:
    identity, recipient = key_pair
    second = pyrage.x25519.Identity.generate()
    listed = tmp_path / "recipients.txt"
    listed.write_text(f"# the admins\n{recipient}\n\n{second.to_public()}\n")
    result = await create_backup(data.config, BackupRequest(destination=tmp_path / "backups", verify=False,
                                                            recipients=(str(listed),)))
    assert result.record.recipients == (recipient, str(second.to_public()))
    second_file = tmp_path / "second.txt"
    second_file.write_text(str(second) + "\n")
    for key in (identity, second_file):
        assert manifest_of(archive_members(result.archive_path, (key,))).name == result.record.name


async def test_an_incremental_follows_an_encrypted_full_without_the_private_key(
        data: DataDir, tmp_path: Path, key_pair: tuple[Path, str]) -> None:
    identity, recipient = key_pair
    request = BackupRequest(destination=tmp_path / "backups", verify=False, recipients=(recipient,))
    full = await create_backup(data.config, request)
    await data.append(ALICE, "Archive", 800)
    incremental = await create_backup(data.config, BackupRequest(
        destination=tmp_path / "backups", verify=False, recipients=(recipient,), incremental=True))
    assert incremental.manifest.parent == full.record.name
    stored_mail = [e.path for e in incremental.manifest.stored_here() if e.path.startswith("files/mail/")]
    assert len(stored_mail) == 1 and "/.Archive/" in stored_mail[0]
    assert manifest_of(archive_members(incremental.archive_path, (identity,))) == incremental.manifest


async def test_an_incremental_after_an_encrypted_one_is_verified_without_the_key(
        data: DataDir, tmp_path: Path, key_pair: tuple[Path, str]) -> None:
    _identity, recipient = key_pair
    request = BackupRequest(destination=tmp_path / "backups", recipients=(recipient,))
    full = await create_backup(data.config, request)
    assert full.record.verify is not None and full.record.verify.ok
    await data.append(ALICE, "INBOX", 801)
    result = await create_backup(data.config, replace(request, incremental=True))
    assert result.manifest.parent == full.record.name
    assert result.record.verify is not None and result.record.verify.ok, result.record.verify
    assert not result.verify_skipped


async def test_an_incremental_after_an_unverified_encrypted_one_is_left_unverified(
        data: DataDir, tmp_path: Path, key_pair: tuple[Path, str]) -> None:
    _identity, recipient = key_pair
    request = BackupRequest(destination=tmp_path / "backups", recipients=(recipient,), verify=False)
    await create_backup(data.config, request)
    result = await create_backup(data.config, replace(request, incremental=True, verify=True))
    assert result.record.verify is None and "was not verified" in result.verify_skipped
    health = read_health(data.path)
    assert health is not None and health.last_result == "unverified"


async def test_a_recipient_that_is_no_key_is_refused(data: DataDir, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="does not exist"):
        await create_backup(data.config, BackupRequest(destination=tmp_path / "backups",
                                                       recipients=(str(tmp_path / "missing.txt"),)))
