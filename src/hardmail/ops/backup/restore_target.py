"""The directory a full restore writes into: made empty (its old contents moved aside to
``<DIR>.before-restore-<time>`` with ``force``) and held by its data-directory lock
(``hardmail.lock``, the lock ``hardmail serve`` takes) for the whole restore; after a failed
restore, what it wrote removed and the old contents put back.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from hardmail.delivery.durable import fsync_dir, make_private_dir
from hardmail.ops.runstate import LOCK_NAME, AnotherServerRunning, ServerLock


class RestoreError(Exception):
    """A restore that cannot go on; ``str()`` is one line for an admin (never a secret)."""


def prepare_target(into: Path, force: bool, archive_name: str = "") -> tuple[ServerLock, Path | None]:
    """Make ``into`` an empty directory holding its data-directory lock (so that no server
    starts on it while it is restored); returns the lock and where old contents were moved
    (with ``force``). The lock is taken before anything is moved: a running server refuses."""
    if into.exists() and not into.is_dir():
        raise RestoreError(f"{into} exists and is not a directory; restore into an empty or new directory")
    if not into.exists() or not _has_contents(into):
        make_private_dir(into)
        return _take_lock(into, archive_name), None
    if not force:
        raise RestoreError(f"{into} is not empty; restore into an empty or new directory, or pass --force to move "
                           f"its contents aside (to {into.name}.before-restore-<time>) first")
    old_lock = _take_lock(into, archive_name)
    try:
        fresh = into.with_name(f".{into.name}.restore-{secrets.token_hex(4)}")
        make_private_dir(fresh)
        lock = _take_lock(fresh, archive_name)  # the inode keeps its lock when renamed to ``into``
        aside = into.with_name(f"{into.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        if aside.exists():
            aside = aside.with_name(f"{aside.name}-{secrets.token_hex(3)}")
        os.rename(into, aside)
        os.rename(fresh, into)  # fails (not empty) if a server made ``into`` in between
        fsync_dir(into.parent)
    finally:
        old_lock.release()
    return lock, aside


def _has_contents(into: Path) -> bool:
    """Anything but a lock file no process holds."""
    return any(child.name != LOCK_NAME for child in into.iterdir())


def _take_lock(into: Path, archive_name: str) -> ServerLock:
    try:
        return ServerLock.acquire(into, {"command": "restore", "archive": archive_name})
    except AnotherServerRunning as exc:
        pid = exc.holder.get("pid", "unknown")
        what = exc.holder.get("command") or "server"
        raise RestoreError(f"a hardmail {what} (pid {pid}) is using {into}; stop it before restoring over it") from None


def undo(into: Path, moved_aside: Path | None) -> str:
    """After a failed restore: remove what it wrote, and put the old contents back (with
    ``force``); returns what to add to the error."""
    _clear_directory(into)
    if moved_aside is None:
        return ""
    try:
        shutil.rmtree(into)
        os.rename(moved_aside, into)
        fsync_dir(into.parent)
    except OSError as exc:
        return f" (the old contents of {into} are in {moved_aside}: they could not be put back: {exc.strerror})"
    return f"; the old contents of {into} were put back"


def _clear_directory(into: Path) -> None:
    """Remove everything a failed restore wrote into ``into`` (it was empty before)."""
    with contextlib.suppress(FileNotFoundError):
        for child in into.iterdir():
            if child.name == LOCK_NAME:
                continue  # held by this restore until it ends
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    child.unlink()
