"""Which server runs on a data directory: the lock it holds and the status files it keeps.

- ``<data_dir>/hardmail.lock``: ``hardmail serve`` (the supervisor, or the only process) holds an
  exclusive ``flock`` on it for its whole life and writes into it who it is (pid, start time,
  configured listeners, worker count). A second ``serve`` on the same directory cannot take the
  lock and says which server has it. The kernel drops the lock when the process (and the workers
  that inherited the descriptor) are gone, so a ``kill -9`` never leaves a stale lock behind.
- ``<data_dir>/run/worker-<N>.json``: each server process rewrites its own file at start and every
  few seconds (listeners, open sessions, queue size for the process that runs the queue, its last
  error-level events), and removes it when it stops. ``hardmail status`` reads them.

Files are written whole (a temporary file renamed over the old one), mode 0600, in 0700 directories.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardmail.ops.log import utc_timestamp

LOCK_NAME = "hardmail.lock"
RUN_DIR = "run"
_LOCK_ATTEMPTS = 20  # see ServerLock.acquire
_LOCK_RETRY_PAUSE = 0.025


def lock_path(data_dir: Path) -> Path:
    return data_dir / LOCK_NAME


def run_dir(data_dir: Path) -> Path:
    return data_dir / RUN_DIR


class AnotherServerRunning(Exception):
    """The data directory's lock is held by another server; ``holder`` is what it wrote."""

    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.holder = holder
        pid = holder.get("pid", "unknown")
        started = holder.get("started", "at an unknown time")
        what = holder.get("command") or "server"  # "restore", "upgrade": a command holds it, not a server
        super().__init__(f"another hardmail {what} (pid {pid}, started {started}) is using {data_dir}")


@dataclass
class ServerLock:
    """The exclusive lock of one data directory, held until :meth:`release` (or process exit)."""

    path: Path
    fd: int

    @classmethod
    def acquire(cls, data_dir: Path, info: dict[str, Any]) -> ServerLock:
        """Take the lock and write ``info`` (plus pid and start time) into it, or raise
        :class:`AnotherServerRunning`. ``hardmail status`` takes a shared lock for an instant to
        test it, so a busy lock is tried again for half a second before it counts as held."""
        path = lock_path(data_dir)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            for attempt in range(_LOCK_ATTEMPTS):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == _LOCK_ATTEMPTS - 1:
                        raise AnotherServerRunning(data_dir, _read_json_fd(fd)) from None
                    time.sleep(_LOCK_RETRY_PAUSE)
            now = time.time()
            record = {"pid": os.getpid(), "started": utc_timestamp(now), "started_at": now,
                      "data_dir": str(data_dir), **info}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd)

    def release(self) -> None:
        """Let the lock go; the file stays (removing it would race with a starting server)."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the last descriptor drops the flock
        self.fd = -1


def lock_holder(data_dir: Path) -> dict[str, Any] | None:
    """What the server holding the lock of ``data_dir`` wrote, or None when no server holds it."""
    try:
        fd = os.open(lock_path(data_dir), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_json_fd(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_json_fd(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --- status files --------------------------------------------------------------------------


def status_path(data_dir: Path, worker: int) -> Path:
    return run_dir(data_dir) / f"worker-{worker}.json"


def write_status(data_dir: Path, worker: int, status: dict[str, Any]) -> None:
    """Replace this process's status file whole (write a temporary file, then rename it)."""
    directory = run_dir(data_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    target = status_path(data_dir, worker)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(status, out)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def remove_status(data_dir: Path, worker: int) -> None:
    with contextlib.suppress(OSError):
        status_path(data_dir, worker).unlink()


def read_statuses(data_dir: Path, server_pid: int | None) -> list[dict[str, Any]]:
    """The status files of the server ``server_pid`` (files left by an earlier server are
    skipped), ordered by worker index."""
    found = []
    for path in _status_files(data_dir):
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and status.get("server_pid") == server_pid:
            found.append(status)
    return sorted(found, key=lambda status: int(status.get("worker") or 0))


def _status_files(data_dir: Path) -> Iterator[Path]:
    with contextlib.suppress(OSError):
        yield from run_dir(data_dir).glob("worker-*.json")
