"""``verify_archive`` fails every crafted archive that restore refuses (review of issue 13): an
entry path or member name that reaches outside the restore directory, a database member outside
``database/``, two entries of which one is a directory of the other, and any member that is not a
regular file (hardmail's archive writer writes regular files only: a symlink, hard link, device
or directory member is not one of its archives)."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup.manifest import MANIFEST_MEMBER, FileEntry, Manifest
from hardmail.ops.backup.restore import RestoreError, restore_full
from hardmail.ops.backup.verify import verify_archive
from support.backup_archives import BuiltArchive, SampleData, build_archive, make_data_dir, rewrite_archive
from support.backup_damage import Member, read_members, write_members


@pytest.fixture
async def sample(tmp_path: Path) -> SampleData:
    return await make_data_dir(tmp_path / "data", messages=2)


@pytest.fixture
def built(sample: SampleData, tmp_path: Path) -> BuiltArchive:
    built = build_archive(sample.data_dir, tmp_path / "backups")
    assert verify_archive(built.path).ok
    return built


def _change_manifest(archive: Path, change: Callable[[Manifest], Manifest],
                     extra: tuple[tuple[str, bytes], ...] = ()) -> None:
    rewrite_archive(archive, lambda name, data: change(Manifest.from_json(data)).to_json()
                    if name == MANIFEST_MEMBER else data, extra=extra)


def _entry(manifest: Manifest, path: str, data: bytes) -> FileEntry:
    return FileEntry(path, len(data), hashlib.sha256(data).hexdigest(), 0o600, 0, manifest.name, path)


@pytest.mark.parametrize("field", ["path", "member"])
async def test_an_entry_that_reaches_outside_fails_verify_and_restore(built: BuiltArchive, tmp_path: Path,
                                                                      field: str) -> None:
    victim = "files/server.key"

    def crafted(manifest: Manifest) -> Manifest:
        def unsafe(entry: FileEntry) -> FileEntry:
            bad = "files/../../../tmp/x"
            return replace(entry, path=bad) if field == "path" else replace(entry, member=bad)

        return replace(manifest, files=tuple(unsafe(e) if e.path == victim else e for e in manifest.files))

    _change_manifest(built.path, crafted)
    report = verify_archive(built.path)
    assert not report.ok
    assert any("unsafe path 'files/../../../tmp/x'" in line for line in report.failures), report.failures
    with pytest.raises(RestoreError, match="unsafe path"):
        await restore_full(built.path, tmp_path / "restored")


@pytest.mark.parametrize("member", ["database/../../V/hardmail.db", "files/server.key"])
def test_a_database_member_restore_refuses_fails_verify(built: BuiltArchive, tmp_path: Path, member: str) -> None:
    outside = tmp_path / "V" / "hardmail.db"
    _change_manifest(built.path, lambda m: replace(m, database=replace(m.database, member=member)))
    report = verify_archive(built.path)
    assert not report.ok
    assert any(repr(member) in line and built.name in line for line in report.failures), report.failures
    assert not outside.exists()


async def test_an_entry_inside_another_entrys_path_fails_verify_and_restore(built: BuiltArchive,
                                                                           tmp_path: Path) -> None:
    outer, inner = b"a file", b"a file under it"

    def crafted(manifest: Manifest) -> Manifest:
        return replace(manifest, files=(*manifest.files, _entry(manifest, "files/a", outer),
                                        _entry(manifest, "files/a/b", inner)))

    _change_manifest(built.path, crafted, extra=(("files/a", outer), ("files/a/b", inner)))
    built.path.with_name(f"{built.name}.json").unlink()  # its record counts fewer stored bytes
    report = verify_archive(built.path)
    assert report.failures == ("files/a/b: is inside files/a, which the manifest lists as a file; restore cannot "
                               "write both",)
    with pytest.raises(RestoreError, match="lists files/a/b inside files/a, which it also lists as a file"):
        await restore_full(built.path, tmp_path / "restored")


def _odd(kind: bytes, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = "files/server.key" if kind == tarfile.LNKTYPE else "/etc/passwd"
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info


@pytest.mark.parametrize(("kind", "name"), [
    (tarfile.SYMTYPE, "files/link"), (tarfile.LNKTYPE, "files/hard"), (tarfile.CHRTYPE, "files/device"),
    (tarfile.FIFOTYPE, "files/fifo"), (tarfile.DIRTYPE, "files/mail"),
], ids=["symlink", "hardlink", "device", "fifo", "directory"])
def test_a_member_that_is_not_a_regular_file_fails_verify(built: BuiltArchive, kind: bytes, name: str) -> None:
    members = read_members(built.path)
    members.insert(len(members) - 1, Member(_odd(kind, name), b""))
    write_members(built.path, members)
    report = verify_archive(built.path)
    assert not report.ok
    assert report.failures == (f"{built.path.name}: member {name!r} is not a regular file; restore would not "
                               "write it",)
