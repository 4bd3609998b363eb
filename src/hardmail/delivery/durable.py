"""Durable file writes: the fsync helpers that Maildir delivery and the outbound spool share.

A file is durable once its data is fsync'd and the directory entry that names it is fsync'd too
(POSIX makes no promise that a rename reaches the disk before the directory is synced).
All functions are synchronous; async callers run them in a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

Chunks = bytes | Iterable[bytes]


def as_chunks(message: Chunks) -> Iterable[bytes]:
    """A message given as one bytes object or as a sequence of chunks, as chunks."""
    if isinstance(message, bytes | bytearray | memoryview):
        return (bytes(message),)
    return message


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
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    size = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in as_chunks(message):
                handle.write(chunk)
                size += len(chunk)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        remove_quietly(path)
        raise
    return size


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
