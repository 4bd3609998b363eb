"""The fast tar reader (``tarstream.open_tar``, ``TarReader``) that verify and restore use: it reads
what Python's tarfile writes (pax, GNU long names, ustar prefixes) as tarfile reads it, refuses
damage (a header's checksum, a cut stream, data after the end), stops its read-ahead thread when
its reader stops early; and the growing-file reader of an archive being written."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from hardmail.ops.backup.archive import ArchiveError
from hardmail.ops.backup.tarstream import FastArchiveWriter, open_tar, read_tar

NAMES = ("files/a", "files/" + "deep/" * 30 + "long-name", "files/mail/exämple/ünïcode", "database/hardmail.db")


def _tar_bytes(tar_format: int, names: tuple[str, ...] = NAMES, scale: int = 50) -> tuple[bytes, dict[str, bytes]]:
    raw = io.BytesIO()
    expected = {}
    with tarfile.open(fileobj=raw, mode="w", format=tar_format) as tar:
        directory = tarfile.TarInfo("files/dir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for n, name in enumerate(names):
            data = bytes(range(256)) * (n * scale + 1)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o640, 1_800_000_000 + n
            tar.addfile(info, io.BytesIO(data))
            expected[name] = data
    return raw.getvalue(), expected


def _compressed(path: Path, data: bytes) -> Path:
    path.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data))
    return path


def _read(path: Path) -> dict[str, tuple[bytes, int, int, bool]]:
    with open_tar(path) as tar:
        return {member.name: (b"".join(bytes(chunk) for chunk in tar.chunks()), member.mode, member.mtime,
                              member.regular) for member in tar.members()}


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_what_tarfile_writes_is_read_as_tarfile_reads_it(tmp_path: Path, tar_format: int) -> None:
    names = NAMES if tar_format != tarfile.USTAR_FORMAT else tuple(n for n in NAMES if n.isascii())
    data, expected = _tar_bytes(tar_format, names)
    found = _read(_compressed(tmp_path / "a.tar.zst", data))
    assert found.pop("files/dir")[3] is False  # listed, not a regular file
    assert {name: value[0] for name, value in found.items()} == expected
    assert all(mode == 0o640 and regular for _data, mode, _mtime, regular in found.values())
    assert found[names[-1]][2] == 1_800_000_000 + len(names) - 1


def test_what_the_fast_writer_writes_is_read_with_its_hashes(tmp_path: Path) -> None:
    writer = FastArchiveWriter(tmp_path / "a.tar.zst")
    hashes = {}
    for n, name in enumerate(NAMES):
        source = tmp_path / f"source{n}"
        source.write_bytes(bytes([n]) * (n * 300_000 + 7))
        hashes[name] = writer.add_file(name, source)[1]
    writer.add_bytes("MANIFEST.json", b"{}")
    writer.close()
    assert writer.written is not None and writer.written.file_size == (tmp_path / "a.tar.zst").stat().st_size
    found = _read(tmp_path / "a.tar.zst")
    assert {name: hashlib.sha256(found[name][0]).hexdigest() for name in NAMES} == hashes
    with open_tar(tmp_path / "a.tar.zst") as tar:
        for _member in tar.members():
            pass
        assert tar.tar_size == writer.written.tar_size


def test_a_header_whose_checksum_is_wrong_is_damage(tmp_path: Path) -> None:
    data, _ = _tar_bytes(tarfile.PAX_FORMAT)
    damaged = bytearray(data)
    damaged[512 + 5] ^= 0x01  # the name field of the first regular member's header
    with pytest.raises(ArchiveError, match=r"damaged or truncated .*checksum"):
        _read(_compressed(tmp_path / "a.tar.zst", bytes(damaged)))


def test_a_cut_stream_and_data_after_the_end_are_damage(tmp_path: Path) -> None:
    data, _ = _tar_bytes(tarfile.PAX_FORMAT)
    with pytest.raises(ArchiveError, match=r"truncated .*unexpected end"):
        _read(_compressed(tmp_path / "cut.tar.zst", data[: len(data) // 2]))
    with pytest.raises(ArchiveError, match="data after the end"):
        _read(_compressed(tmp_path / "more.tar.zst", data + b"appended"))


def test_a_flipped_compressed_byte_is_caught_by_the_content_checksum(tmp_path: Path) -> None:
    data, _ = _tar_bytes(tarfile.PAX_FORMAT)
    archive = _compressed(tmp_path / "a.tar.zst", data)
    compressed = bytearray(archive.read_bytes())
    compressed[-2] ^= 0x01  # in the frame's checksum itself: every member decodes, the end does not
    archive.write_bytes(bytes(compressed))
    with pytest.raises(ArchiveError, match="damaged"):
        _read(archive)


def test_stopping_early_stops_the_read_ahead(tmp_path: Path) -> None:
    data, _ = _tar_bytes(tarfile.PAX_FORMAT, tuple(f"files/{n}" for n in range(60)), scale=100)  # 45 MB: more
    archive = _compressed(tmp_path / "a.tar.zst", data)  # than the read-ahead holds, so that it waits
    with open_tar(archive) as tar:
        for member in tar.members():
            assert member.name == "files/dir"
            break
    assert not [t for t in threading.enumerate() if t.name == "hardmail-archive-read"]


def test_a_growing_file_is_read_as_far_as_written_and_ends_with_its_writer(tmp_path: Path) -> None:
    writer = FastArchiveWriter(tmp_path / "a.tar.zst")
    source = writer.follow()
    found: list[str] = []

    def read_back() -> None:
        with read_tar(source, "a.tar.zst") as tar:
            found.extend(member.name for member in tar.members())

    reader = threading.Thread(target=read_back)
    reader.start()
    for n in range(40):
        writer.add_bytes(f"files/{n}", bytes([n]) * 100_000)
    writer.finish()
    reader.join(timeout=60)
    writer.sync()
    source.close()
    assert not reader.is_alive() and found == [f"files/{n}" for n in range(40)]


def test_a_growing_file_whose_writer_gives_up_ends_in_an_error(tmp_path: Path) -> None:
    writer = FastArchiveWriter(tmp_path / "a.tar.zst")
    source = writer.follow()
    errors: list[BaseException] = []

    def read_back() -> None:
        try:
            with read_tar(source, "a.tar.zst") as tar:
                for _member in tar.members():
                    pass
        except ArchiveError as exc:
            errors.append(exc)

    reader = threading.Thread(target=read_back)
    reader.start()
    writer.add_bytes("files/one", b"x" * 10_000)
    writer.abort()
    reader.join(timeout=60)
    source.close()
    assert not reader.is_alive() and errors and not (tmp_path / "a.tar.zst").exists()
