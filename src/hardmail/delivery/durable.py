"""Durable file writes: the fsync helpers that Maildir delivery and the outbound spool share.

A file is durable once its data is fsync'd and the directory entry that names it is fsync'd too
(POSIX makes no promise that a rename reaches the disk before the directory is synced).
All functions are synchronous; async callers run them in a thread.

A message is written from parts: bytes held in memory, or a :class:`FileRange` of a file already
on disk (the rest of a received message in ``incoming/``), which is copied by the kernel
(``copy_file_range``, else in bounded blocks) so that a big message never passes through memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

COPY_BLOCK = 1024 * 1024  # bytes per copy call (and the buffer of the read/write fallback)
_IOV_MAX = 1024  # buffers per writev call (Linux UIO_MAXIOV)


@dataclass(frozen=True, slots=True)
class FileRange:
    """``length`` bytes of the file at ``path`` from ``offset``: a message part left on disk.

    Small to pickle (the Maildir writer process gets the path, not the bytes)."""

    path: str
    offset: int
    length: int


Part = bytes | FileRange
Chunks = bytes | Iterable[Part]


def as_chunks(message: Chunks) -> Iterable[Part]:
    """A message given as one bytes object or as a sequence of parts, as parts."""
    if isinstance(message, bytes | bytearray | memoryview):
        return (bytes(message),)
    return message


def part_size(part: Part) -> int:
    return part.length if isinstance(part, FileRange) else len(part)


def write_all(fd: int, parts: Sequence[Part]) -> None:
    """Write every part: runs of bytes with as few writev calls as the kernel allows, file ranges
    copied file to file."""
    run: list[bytes] = []
    for part in parts:
        if isinstance(part, FileRange):
            _write_buffers(fd, run)
            run = []
            copy_range(part, fd)
        elif part:
            run.append(part)
    _write_buffers(fd, run)


def _write_buffers(fd: int, chunks: list[bytes]) -> None:
    pending = [memoryview(chunk) for chunk in chunks]
    first = 0  # pending[first:] is still to be written
    while first < len(pending):
        written = os.writev(fd, pending[first:first + _IOV_MAX])
        while first < len(pending) and written >= len(pending[first]):
            written -= len(pending[first])
            first += 1
        if written:
            pending[first] = pending[first][written:]


def copy_range(source: FileRange, fd: int) -> None:
    """Append ``source`` to ``fd``: ``copy_file_range`` (no copy through user space; reflinks
    where the file system has them), else pread/write in COPY_BLOCK pieces."""
    src = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        offset, left = source.offset, source.length
        try:
            while left > 0:
                done = os.copy_file_range(src, fd, min(left, COPY_BLOCK), offset)
                if done == 0:
                    raise OSError(errno.EIO, f"{source.path} is shorter than expected")
                offset, left = offset + done, left - done
        except OSError as exc:  # another file system or an old kernel: copy through a buffer
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
        while left > 0:
            block = os.pread(src, min(left, COPY_BLOCK), offset)
            if not block:
                raise OSError(errno.EIO, f"{source.path} is shorter than expected")
            _write_buffers(fd, [block])
            offset, left = offset + len(block), left - len(block)
    finally:
        os.close(src)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that entries created, renamed or removed in it are on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(path: Path, message: Chunks, mode: int = 0o600) -> int:
    """Create ``path`` (it must not exist), write the chunks, flush and fsync; returns the size.

    On any error the partly written file is removed before the error propagates.
    """
    parts = list(as_chunks(message))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            write_all(fd, parts)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        remove_quietly(path)
        raise
    return sum(part_size(part) for part in parts)


def write_durably(path: Path, message: Chunks, mode: int = 0o600) -> int:
    """Write ``path`` atomically: tmp file in the same dir → write → fsync → rename → fsync dir.

    Readers see either the old file or the complete new one, never a partial write.
    Returns the number of bytes written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    size = write_new_file(tmp, message, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)
    return size


def remove_quietly(path: Path) -> None:
    """Remove a file, ignoring a file that is already gone or cannot be removed (cleanup paths)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def make_private_dir(path: Path) -> list[Path]:
    """Create ``path`` and any missing parents with mode 0700; returns the directories created.

    Existing directories keep their mode. Each new directory entry is fsync'd in its parent, so
    the directory survives a crash once this returns.
    """
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # created concurrently by another thread or process
        os.chmod(directory, 0o700)  # mkdir's mode is reduced by the umask
        fsync_dir(directory.parent)
    return list(reversed(missing))
