"""Damaged copies of real backup archives, made the way disks, networks and people damage them: a
flipped byte inside one stored file (the archive re-packed around it, so only that file's hash is
wrong), a stored file left out, a flipped byte of the compressed stream, a truncated copy.

The archives are read and re-written with :mod:`tarfile` and ``zstandard`` directly, not with
hardmail's archive code, so that a fault shared by the writer and the reader cannot hide here.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes


def read_members(archive: Path) -> list[Member]:
    with archive.open("rb") as raw:
        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            members = []
            for info in tar:
                extracted = tar.extractfile(info) if info.isreg() else None
                members.append(Member(info, extracted.read() if extracted is not None else b""))
    return members


def write_members(archive: Path, members: list[Member]) -> None:
    with archive.open("wb") as raw:
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        with compressor.stream_writer(raw, closefd=False) as stream, \
                tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for member in members:
                member.info.size = len(member.data)
                tar.addfile(member.info, _Reader(member.data))


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.at + size
        chunk, self.at = self.data[self.at:end], min(end, len(self.data))
        return chunk


def _message_member(members: list[Member]) -> Member:
    """A stored Maildir message file (``files/mail/.../cur|new/...``) of a few hundred bytes or more."""
    for member in members:
        parts = member.info.name.split("/")
        if parts[:2] == ["files", "mail"] and len(parts) > 3 and parts[-2] in ("cur", "new") and len(member.data) > 200:
            return member
    raise AssertionError("the archive stores no Maildir message file")


def flip_stored_byte(source: Path, target: Path) -> str:
    """A byte of one stored message flipped; returns that member's name."""
    members = read_members(source)
    victim = _message_member(members)
    middle = len(victim.data) // 2
    victim.data = victim.data[:middle] + bytes([victim.data[middle] ^ 0x01]) + victim.data[middle + 1:]
    write_members(target, members)
    return victim.info.name


def drop_stored_file(source: Path, target: Path) -> str:
    """One stored message left out of the archive (its manifest entry kept); returns its name."""
    members = read_members(source)
    victim = _message_member(members)
    write_members(target, [m for m in members if m is not victim])
    return victim.info.name


def flip_compressed_byte(source: Path, target: Path) -> str:
    """A byte in the middle of the compressed file flipped."""
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0x40
    target.write_bytes(bytes(data))
    return "damaged"


def truncate(source: Path, target: Path) -> str:
    """The first half of the file only (a copy cut short)."""
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return "truncated"


DAMAGES: dict[str, Callable[[Path, Path], str]] = {
    "flipped byte in a stored file": flip_stored_byte,
    "missing file": drop_stored_file,
    "flipped byte in the compressed stream": flip_compressed_byte,
    "truncated archive": truncate,
}


def damaged_copy(archive: Path, directory: Path, damage: str) -> tuple[Path, str]:
    """``archive`` damaged by ``damage`` into ``directory`` under its own name, with its sidecar
    (the catalog record) copied beside it when there is one; (the copy, what names the damage)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / archive.name
    named = DAMAGES[damage](archive, target)
    sidecar = archive.with_name(archive.name.split(".tar.zst")[0] + ".json")
    if sidecar.exists():
        shutil.copy2(sidecar, directory / sidecar.name)
    return target, named
