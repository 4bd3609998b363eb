"""``verify_archive(..., manifests=...)``: the new archive of ``hardmail backup create`` is checked
against the manifests kept for the earlier archives of its chain, which are looked for but not
read: an incremental after an encrypted full verifies without the private key, and a manifest that
disagrees, a foreign one or a missing earlier archive is still a failure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup.archive import new_identity
from hardmail.ops.backup.verify import verify_archive
from support.backup_archives import ALICE, BuiltArchive, SampleData, build_archive, make_data_dir, message


@pytest.fixture
async def sample(tmp_path: Path) -> SampleData:
    return await make_data_dir(tmp_path / "data")


async def _chain(sample: SampleData, tmp_path: Path, recipients: tuple[str, ...] = ()) -> tuple[BuiltArchive,
                                                                                                 BuiltArchive]:
    """A full archive (encrypted to ``recipients``), one new message, and a plaintext incremental."""
    from hardmail.core.clock import SystemClock
    from hardmail.mailbox import MailboxStore
    from hardmail.store import open_store

    full = build_archive(sample.data_dir, tmp_path / "backups", recipients=recipients)
    store = await open_store(sample.database_url)
    try:
        mailboxes = MailboxStore(sample.config.maildir_root, store.mailbox, "mail.example.org", SystemClock())
        await mailboxes.append(ALICE, "INBOX", message("after the full backup"))
    finally:
        await store.close()
    return full, build_archive(sample.data_dir, tmp_path / "backups", parent=full)


async def test_an_incremental_after_an_encrypted_full_verifies_with_the_kept_manifest(
        sample: SampleData, tmp_path: Path) -> None:
    full, incremental = await _chain(sample, tmp_path, recipients=(new_identity()[1],))
    without = verify_archive(incremental.path)
    assert not without.ok, "the encrypted full archive cannot be read without its identity"
    report = verify_archive(incremental.path, manifests={full.name: full.manifest})
    assert report.failures == () and report.ok
    assert report.files_checked == len(incremental.manifest.files)


async def test_the_earlier_archive_is_not_read_but_must_be_there(sample: SampleData, tmp_path: Path) -> None:
    full, incremental = await _chain(sample, tmp_path)
    full.path.write_bytes(b"not read when its manifest is given")
    assert not verify_archive(incremental.path).ok
    assert verify_archive(incremental.path, manifests={full.name: full.manifest}).ok
    full.path.unlink()
    report = verify_archive(incremental.path, manifests={full.name: full.manifest})
    assert report.failures == (f"{full.name}: this archive of the chain is missing from {full.path.parent}",)


async def test_a_kept_manifest_that_disagrees_is_a_failure(sample: SampleData, tmp_path: Path) -> None:
    full, incremental = await _chain(sample, tmp_path)
    held = next(e for e in incremental.manifest.files if e.archive == full.name and e.path.startswith("files/mail/"))
    changed = tuple(replace(e, sha256="0" * 64) if e.member == held.member else e for e in full.manifest.files)
    report = verify_archive(incremental.path, manifests={full.name: replace(full.manifest, files=changed)})
    assert report.failures == (f"{held.path}: SHA-256 differs from the manifest",)
    foreign = replace(full.manifest, name="hardmail-20200101T000000000000Z-full",
                      chain=("hardmail-20200101T000000000000Z-full",))
    assert not verify_archive(incremental.path, manifests={full.name: foreign}).ok
