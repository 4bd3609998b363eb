"""A flipped byte anywhere in an archive's compressed stream is an ArchiveError when the archive is
read to its end, never an archive that quietly ends early or reads other bytes (a tar header the
flip made invalid ends Python's tar reader without an error; the zstd content checksum, checked at
the end of the stream, is what catches it). A flip zstd does not need (some frame header bits)
reads back the same members and bytes, which is no damage."""

from __future__ import annotations

import random
from pathlib import Path

from hardmail.ops.backup.archive import ArchiveError, ArchiveWriter, iter_members


def _archive(path: Path) -> Path:
    rng = random.Random(7)
    writer = ArchiveWriter(path)
    for n in range(40):
        source = path.parent / f"m{n}"
        words = " ".join(rng.choice(("mail", "backup", "restore", "drill", "index")) for _ in range(400))
        source.write_bytes(f"Subject: {n}\r\n\r\n{words}\r\n".encode())
        writer.add_file(f"files/mail/example.org/alice/cur/{n}.M1P1.host:2,S", source)
    writer.add_bytes("MANIFEST.json", b"{}")
    writer.close()
    return path


def _read_all(path: Path) -> list[tuple[str, bytes]]:
    members = []
    for info, stream in iter_members(path):
        data = b""
        while chunk := stream.read(65536):
            data += chunk
        members.append((info.name, data))
    return members


def test_every_flipped_byte_is_an_archive_error(tmp_path: Path) -> None:
    sound = _archive(tmp_path / "sound.tar.zst")
    expected = _read_all(sound)
    assert len(expected) == 41
    data = sound.read_bytes()
    quiet = []
    for at in range(20, len(data) - 20, max(1, len(data) // 150)):
        damaged = tmp_path / f"damaged-{at}.tar.zst"
        flipped = bytearray(data)
        flipped[at] ^= 0x40
        damaged.write_bytes(bytes(flipped))
        try:
            members = _read_all(damaged)
        except ArchiveError:
            continue
        if members != expected:
            quiet.append((at, len(members)))
    assert quiet == [], f"flipped bytes read as a shorter archive without an error (offset, members): {quiet}"
