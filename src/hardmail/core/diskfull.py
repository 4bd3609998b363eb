"""Recognising a full disk in an exception and in what it wraps (causes, contexts, SQLAlchemy's
``orig``): one rule for the SMTP path (452 4.3.1) and the CLI (its one-line "disk is full" error).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)  # "database or disk is full"
POSTGRES_DISK_FULL = "53100"  # PostgreSQL SQLSTATE disk_full
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
LOW_SPACE = 64 * 1024  # bytes free below which an I/O error on the data directory counts as "full"


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it wraps: causes, contexts and SQLAlchemy's ``orig``."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (current.__cause__, current.__context__, getattr(current, "orig", None)):
            if isinstance(inner, BaseException):
                stack.append(inner)


def is_disk_full(exc: BaseException | None, data_dir: Path | None = None) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk is full: ENOSPC/EDQUOT, SQLite's
    "database or disk is full", PostgreSQL's disk_full, or SQLite's "disk I/O error" while the
    file system holding ``data_dir`` has (next to) no space left."""
    if exc is None:
        return False
    for cause in causes(exc):
        if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
            return True
        if getattr(cause, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if getattr(cause, "sqlstate", None) == POSTGRES_DISK_FULL or "database or disk is full" in str(cause):
            return True
        if "disk I/O error" in str(cause) and data_dir is not None and _space_left(data_dir) < LOW_SPACE:
            return True
    return False


def _space_left(path: Path) -> int:
    try:
        found = os.statvfs(path)
    except OSError:
        return LOW_SPACE
    return found.f_bavail * found.f_frsize
