"""The health state of backups: when the last good (created *and* verified) backup was made, how
the last attempt went, and the last failure. One small JSON file, ``<data_dir>/backup-state/
health.json`` (mode 0600 in a 0700 directory), written atomically and fsync'd after every attempt
(manual, scheduled or before an upgrade) by whoever made it; ``hardmail status``, monitoring and
the security audit read it.

``last_result`` is ``ok`` (archive made and verified), ``unverified`` (archive made, but not
verified: verification failed or was turned off; it does not count as a backup) or ``failed`` (no
archive). ``last_error`` and ``last_failure_at`` describe the most recent attempt that failed or
whose verification failed; they stay after a later success, so that an admin sees what went wrong
last. ``consecutive_failures`` counts attempts since the last good one that were not ``ok``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from hardmail.delivery.durable import make_private_dir, write_durably

STATE_DIR_NAME = "backup-state"
HEALTH_FILE_NAME = "health.json"
_LOCK_FILE_NAME = ".health.lock"
_MAX_ERROR_LENGTH = 500
Result = Literal["ok", "failed", "unverified"]
RESULTS: tuple[Result, ...] = ("ok", "failed", "unverified")


@dataclass(frozen=True, slots=True)
class BackupHealth:
    """What ``health.json`` holds. Times are timezone-aware UTC datetimes (ISO 8601 in the file)."""

    last_good_backup_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_result: Result | None = None
    last_archive: str | None = None
    last_error: str = ""
    last_full_at: datetime | None = None
    last_failure_at: datetime | None = None
    consecutive_failures: int = 0

    def good_backup_age(self, now: datetime) -> float | None:
        """Seconds since the last good backup, or None when there never was one."""
        if self.last_good_backup_at is None:
            return None
        return max(0.0, (now - self.last_good_backup_at).total_seconds())

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        for key, item in value.items():
            if isinstance(item, datetime):
                value[key] = item.astimezone(UTC).isoformat()
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> BackupHealth:
        result = value.get("last_result")
        return cls(
            last_good_backup_at=_parse_time(value.get("last_good_backup_at")),
            last_attempt_at=_parse_time(value.get("last_attempt_at")),
            last_result=result if result in RESULTS else None,
            last_archive=_optional_str(value.get("last_archive")),
            last_error=str(value.get("last_error") or ""),
            last_full_at=_parse_time(value.get("last_full_at")),
            last_failure_at=_parse_time(value.get("last_failure_at")),
            consecutive_failures=int(value.get("consecutive_failures") or 0),
        )


def health_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_DIR_NAME / HEALTH_FILE_NAME


def read_health(data_dir: Path) -> BackupHealth | None:
    """The recorded health, or None when no attempt was ever recorded (or the file is damaged:
    the next attempt rewrites it)."""
    try:
        data = health_path(data_dir).read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = json.loads(data)
        return BackupHealth.from_json(value) if isinstance(value, dict) else None
    except (ValueError, TypeError):
        return None


def record_attempt(data_dir: Path, *, ok: bool, verified: bool, archive: str | None, error: str = "",
                   full: bool = False, at: datetime | None = None) -> BackupHealth:
    """Record one backup attempt and return the new health. ``ok``: the archive was made;
    ``verified``: it was verified and the verification passed; ``full``: it is a full backup.
    ``error`` is one line for an admin (never a secret). Safe against concurrent recorders."""
    when = (at or datetime.now(UTC)).astimezone(UTC)
    directory = _private_state_dir(Path(data_dir))
    with _locked(directory):
        previous = read_health(data_dir) or BackupHealth()
        health = next_health(previous, ok=ok, verified=verified, archive=archive, error=error,
                             full=full, at=when)
        data = json.dumps(health.to_json(), indent=1, sort_keys=True).encode() + b"\n"
        write_durably(directory / HEALTH_FILE_NAME, data, mode=0o600)
    return health


def next_health(previous: BackupHealth, *, ok: bool, verified: bool, archive: str | None, error: str,
                full: bool, at: datetime) -> BackupHealth:
    """The pure step: the health after one attempt."""
    result: Result = "failed" if not ok else ("ok" if verified else "unverified")
    error = _one_line(error)
    health = replace(previous, last_attempt_at=at, last_result=result,
                     last_archive=archive if ok else previous.last_archive)
    if result == "ok":
        health = replace(health, last_good_backup_at=at, consecutive_failures=0)
        if full:
            health = replace(health, last_full_at=at)
    else:
        health = replace(health, consecutive_failures=previous.consecutive_failures + 1)
    if result == "failed" or error:
        health = replace(health, last_failure_at=at, last_error=error or "the backup failed")
    return health


def _private_state_dir(data_dir: Path) -> Path:
    directory = data_dir / STATE_DIR_NAME
    make_private_dir(directory)
    if directory.stat().st_mode & 0o077:
        os.chmod(directory, 0o700)
    return directory


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / _LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_ERROR_LENGTH else line[: _MAX_ERROR_LENGTH - 1] + "…"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
