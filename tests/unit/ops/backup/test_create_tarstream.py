"""The fast archive writer: what it writes is the archive format the reader (archive.iter_members),
Python's tarfile and GNU tar all read, with the hashes it returns."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from hardmail.ops.backup.archive import ArchiveError, iter_members
from hardmail.ops.backup.tarstream import WHOLE_READ, FastArchiveWriter, header

NAMES = ("files/a", "files/mail/example.org/alice/.Projects.&AMk-t&AOk-/cur/" + "1796313924.M1P2Q3.mx,S=99:2,S" * 4,
         "files/mail/exämple/ünïcode", "files/" + "x" * 95)


def _write(tmp_path: Path) -> tuple[Path, dict[str, tuple[bytes, int]]]:
    archive = tmp_path / "a.tar.zst"
    writer = FastArchiveWriter(archive)
    expected = {}
    for n, name in enumerate(NAMES):
        source = tmp_path / f"source{n}"
        data = bytes(range(256)) * (n * 7 + 1)
        source.write_bytes(data)
        source.chmod(0o640 if n % 2 else 0o600)
        size, sha256, mode, _mtime = writer.add_file(name, source)
        assert (size, sha256, mode) == (len(data), hashlib.sha256(data).hexdigest(), source.stat().st_mode & 0o777)
        expected[name] = (data, mode)
    writer.add_bytes("files/empty", b"")
    expected["files/empty"] = (b"", 0o600)
    writer.add_bytes("MANIFEST.json", b"{}", mode=0o600, mtime=1_800_000_000.5)
    expected["MANIFEST.json"] = (b"{}", 0o600)
    writer.close()
    return archive, expected


def test_the_reader_of_the_format_reads_it(tmp_path: Path) -> None:
    archive, expected = _write(tmp_path)
    found = {info.name: (stream.read(), info.mode) for info, stream in iter_members(archive)}
    assert found == expected
    assert oct(archive.stat().st_mode & 0o777) == "0o600"


def test_tarfile_reads_it_record_padded(tmp_path: Path) -> None:
    archive, expected = _write(tmp_path)
    with open(archive, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain:
        data = plain.read()
    assert len(data) % (20 * 512) == 0 and data.endswith(bytes(1024))
    with tarfile.open(fileobj=__import__("io").BytesIO(data), mode="r:") as tar:
        names = [member.name for member in tar.getmembers()]
        assert names == list(expected)
        assert tar.getmember("MANIFEST.json").mtime == 1_800_000_000


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
def test_gnu_tar_reads_it(tmp_path: Path) -> None:
    archive, expected = _write(tmp_path)
    listed = subprocess.run(["tar", "--zstd", "-tf", str(archive)], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines() == list(expected)
    assert not listed.stderr


def test_a_size_beyond_the_octal_field_goes_in_a_pax_record() -> None:
    block = header("files/big", 9 * 1024**3, 0o600, 0)
    assert len(block) == 3 * 512 and block[156:157] == b"x"
    assert b" size=9663676416\n" in block[512:1024]
    info = tarfile.TarInfo.frombuf(block[1024:], "utf-8", "strict")
    assert info.name == "files/big"


def test_a_file_that_is_gone_leaves_nothing_written(tmp_path: Path) -> None:
    writer = FastArchiveWriter(tmp_path / "a.tar.zst")
    with pytest.raises(FileNotFoundError):
        writer.add_file("files/gone", tmp_path / "gone")
    (tmp_path / "there").write_bytes(b"here")
    writer.add_file("files/there", tmp_path / "there")
    writer.close()
    assert [info.name for info, _ in iter_members(tmp_path / "a.tar.zst")] == ["files/there"]


def test_a_large_file_is_streamed_and_a_directory_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"y" * (WHOLE_READ + 12345))
    writer = FastArchiveWriter(tmp_path / "a.tar.zst")
    seen: list[int] = []
    size, sha256, _mode, _mtime = writer.add_file("files/big", big, seen.append)
    assert size == WHOLE_READ + 12345 and sum(seen) == size and sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    with pytest.raises(ArchiveError, match="not a regular file"):
        writer.add_file("files/dir", tmp_path)
    writer.close()
    [(info, data)] = [(info, stream.read()) for info, stream in iter_members(tmp_path / "a.tar.zst")]
    assert info.size == size and data == big.read_bytes()


def test_an_existing_file_is_never_overwritten_and_abort_removes_the_partial_one(tmp_path: Path) -> None:
    (tmp_path / "taken.tar.zst").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        FastArchiveWriter(tmp_path / "taken.tar.zst")
    assert (tmp_path / "taken.tar.zst").read_bytes() == b"keep"
    writer = FastArchiveWriter(tmp_path / "partial.tar.zst")
    writer.add_bytes("files/x", b"x")
    writer.abort()
    assert not (tmp_path / "partial.tar.zst").exists()
