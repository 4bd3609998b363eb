"""The scheduled backup, taken once: what ``hardmail backup run`` does (the server's scheduler runs
that command in a child process, :mod:`hardmail.server.backup_scheduler`).

1. One at a time: a lock in the backup state directory; a run that finds it held is ``skipped``.
2. Full or incremental: full when the destination has no archive, when the newest full one is
   ``backup.full_every_days`` local days old, or when the newest archive failed verification or
   its chain is incomplete (nothing is built on a damaged archive); else incremental.
3. The archive, encrypted to ``backup.recipients`` and verified when ``backup.verify`` (by
   :func:`hardmail.ops.backup.create.create_backup`, which also records the health state).
4. Retention (:mod:`.retention`), only after a good archive: each archive deleted goes with its
   sidecar and its manifest copy in the state directory (dependants first); one ``backup.pruned``.

A failure, or an archive that does not verify, is an error-level ``backup.failed`` event and is
recorded in the health state (:mod:`.health`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal

from hardmail.config.schema import Config
from hardmail.delivery.durable import fsync_dir, make_private_dir
from hardmail.ops.backup import health
from hardmail.ops.backup.manifest import SIDECAR_SUFFIX
from hardmail.ops.backup.retention import Candidate, as_candidate, retention_plan
from hardmail.ops.backup.schedule import resolve_timezone
from hardmail.ops.log import log_event

Outcome = Literal["ok", "unverified", "failed", "skipped"]
Kind = Literal["full", "incremental"]
ProgressCallback = Callable[[str, int, int], None]
_RUN_LOCK_NAME = "run.lock"
_MANIFESTS_DIR = "manifests"
EXIT_CODES: dict[Outcome, int] = {"ok": 0, "unverified": 1, "failed": 1, "skipped": 75}  # 75: EX_TEMPFAIL


@dataclass(frozen=True)
class ScheduledOutcome:
    """How one scheduled backup went (``hardmail backup run --json`` prints it)."""

    result: Outcome
    started_at: str
    seconds: float
    kind: Kind | None = None
    archive: str | None = None
    error: str = ""
    pruned: tuple[str, ...] = field(default_factory=tuple)

    @property
    def good(self) -> bool:
        return self.result == "ok"

    def exit_code(self, verify_wanted: bool) -> int:
        """0 for a good archive, and for an unverified one when ``backup.verify`` is off."""
        if self.result == "unverified" and not verify_wanted:
            return 0
        return EXIT_CODES[self.result]

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["pruned"] = list(self.pruned)
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ScheduledOutcome:
        return cls(result=value["result"], started_at=str(value["started_at"]), seconds=float(value["seconds"]),
                   kind=value.get("kind"), archive=value.get("archive"), error=str(value.get("error") or ""),
                   pruned=tuple(str(name) for name in value.get("pruned") or ()))


def destination_of(config: Config) -> Path:
    """``backup.destination``, or ``data_dir/backups``."""
    return config.backup.destination or config.data_dir / "backups"


def schedule_zone(config: Config) -> tzinfo:
    return resolve_timezone(config.backup.timezone)


async def run_scheduled_backup(config: Config, now: datetime, *, config_file: Path | None = None,
                               progress: ProgressCallback | None = None) -> ScheduledOutcome:
    """Take the scheduled backup now (see the module docstring); never raises for a failed backup."""
    started = time.monotonic()
    with _run_lock(config.data_dir) as acquired:
        if not acquired:
            log_event("backup.skipped", level="warning", reason="scheduled",
                      detail="another backup of this data directory is running")
            return ScheduledOutcome("skipped", now.isoformat(), 0.0, error="another backup is running")
        return await _locked_run(config, now.astimezone(schedule_zone(config)), config_file, progress, started)


async def _locked_run(config: Config, now: datetime, config_file: Path | None,
                      progress: ProgressCallback | None, started: float) -> ScheduledOutcome:
    destination = destination_of(config)
    before: health.BackupHealth | None = None
    kind: Kind | None = None
    try:
        before = health.read_health(config.data_dir)
        await asyncio.to_thread(make_private_dir, destination)
        kind = choose_kind(await asyncio.to_thread(_records, destination), now, config.backup.full_every_days)
        result = await _create(config, destination, kind, config_file, progress)
    except asyncio.CancelledError:
        _record_failure(config, before, kind, "interrupted: the server stopped during the backup")
        raise
    except Exception as exc:
        error = _error_text(exc)
        _record_failure(config, before, kind, error)
        if not _logged_by_create(exc):
            log_event("backup.failed", level="error", reason="scheduled", kind=kind, error=error)
        return ScheduledOutcome("failed", now.isoformat(), _since(started), kind=kind, error=error)
    return await _after_create(config, destination, now, kind, result, before, started)


async def _after_create(config: Config, destination: Path, now: datetime, kind: Kind, result: Any,
                        before: health.BackupHealth | None, started: float) -> ScheduledOutcome:
    record = result.record
    state = as_candidate(record).state
    name = str(record.name)
    if state == "bad":
        error = "the new archive failed verification: " + "; ".join(_verify_failures(record))[:300]
        _record_if_missing(config, before, ok=True, verified=False, archive=name, error=error, kind=kind)
        # create_backup has logged the failed verification as backup.failed already
        return ScheduledOutcome("unverified", now.isoformat(), _since(started), kind, name, error)
    _record_if_missing(config, before, ok=True, verified=state == "good", archive=name, kind=kind)
    # Retention counts from the new archive's time when that is later (a run's "now" is its start).
    prune_at = max(now, datetime.fromisoformat(str(record.created_at)).astimezone(now.tzinfo))
    pruned = await asyncio.to_thread(prune, config, destination, prune_at)
    outcome: Outcome = "ok" if state == "good" else "unverified"
    return ScheduledOutcome(outcome, now.isoformat(), _since(started), kind, name, pruned=tuple(pruned))


async def _create(config: Config, destination: Path, kind: Kind, config_file: Path | None,
                  progress: ProgressCallback | None) -> Any:
    from hardmail.ops.backup.create import BackupRequest, create_backup

    request = BackupRequest(destination=destination, incremental=kind == "incremental",
                            recipients=tuple(config.backup.recipients), verify=config.backup.verify,
                            reason="scheduled", config_file=config_file)
    return await create_backup(config, request, progress)


def _logged_by_create(exc: BaseException) -> bool:
    from hardmail.ops.backup.create import BackupError

    return isinstance(exc, BackupError)


def _records(destination: Path) -> list[Any]:
    from hardmail.ops.backup.catalog import read_records

    return list(read_records(destination))


# --- full or incremental ---------------------------------------------------------------------------

def choose_kind(records: Sequence[Any], now: datetime, full_every_days: int) -> Kind:
    """Full or incremental for the next scheduled backup (``now`` in the schedule's zone: days are
    counted by local date, so a weekly full comes on the same weekday whatever the minutes)."""
    candidates = sorted((as_candidate(r) for r in records), key=lambda c: (c.created_at, c.name))
    if full_every_days <= 0 or not candidates:
        return "full"
    newest = candidates[-1]
    if newest.state == "bad" or not _chain_complete(newest, candidates):
        return "full"
    chain_full = _first_of_chain(newest, candidates)
    if chain_full is None:
        return "full"
    days = (now.date() - chain_full.created_at.astimezone(now.tzinfo).date()).days
    return "full" if days >= full_every_days else "incremental"


def _chain_complete(newest: Candidate, candidates: list[Candidate]) -> bool:
    names = {c.name for c in candidates}
    return all(name in names for name in newest.chain) and (newest.parent is None or newest.parent in names)


def _first_of_chain(newest: Candidate, candidates: list[Candidate]) -> Candidate | None:
    by_name = {c.name: c for c in candidates}
    first = newest.chain[0] if newest.chain else newest.name
    return by_name.get(first)


# --- retention -------------------------------------------------------------------------------------

def prune(config: Config, destination: Path, now: datetime, records: Sequence[Any] | None = None) -> list[str]:
    """Delete what retention does not keep (newest first, so that a crash never leaves an
    incremental without its parent); returns the names deleted. ``records``: the catalog of
    ``destination`` (read from it when None)."""
    records = _records(destination) if records is None else list(records)
    backup = config.backup
    plan = retention_plan(records, now, backup.keep_daily, backup.keep_weekly, backup.keep_monthly)
    by_name = {str(_field(record, "name")): record for record in records}
    deleted = []
    for name in reversed(plan.delete):
        _delete_archive(destination, config.data_dir, by_name[name])
        deleted.append(name)
    if deleted:
        fsync_dir(destination)
        with contextlib.suppress(OSError):
            fsync_dir(config.data_dir / health.STATE_DIR_NAME / _MANIFESTS_DIR)
        log_event("backup.pruned", archives=deleted, count=len(deleted), kept=len(plan.keep),
                  destination=str(destination))
    return deleted


def _delete_archive(destination: Path, data_dir: Path, record: Any) -> None:
    """The archive file, then the manifest copy, then the sidecar: until the sidecar goes, the
    catalog still lists it and the next prune finishes the job."""
    name = str(_field(record, "name"))
    archive_file = _field(record, "archive_file")
    if archive_file:
        _unlink(destination / Path(str(archive_file)).name)
    manifests = data_dir / health.STATE_DIR_NAME / _MANIFESTS_DIR
    _unlink(manifests / f"{name}.json")
    _unlink(destination / f"{name}{SIDECAR_SUFFIX}")


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --- health and locking ----------------------------------------------------------------------------

def _record_failure(config: Config, before: health.BackupHealth | None, kind: Kind | None, error: str) -> None:
    _record_if_missing(config, before, ok=False, verified=False, archive=None, error=error, kind=kind)


def _record_if_missing(config: Config, before: health.BackupHealth | None, *, ok: bool, verified: bool,
                       archive: str | None, kind: Kind | None, error: str = "") -> None:
    """Record the attempt unless create_backup already did (the health file changed since)."""
    with contextlib.suppress(OSError):
        if health.read_health(config.data_dir) == before:
            health.record_attempt(config.data_dir, ok=ok, verified=verified, archive=archive, error=error,
                                  full=kind == "full")


@contextlib.contextmanager
def _run_lock(data_dir: Path) -> Iterator[bool]:
    directory = data_dir / health.STATE_DIR_NAME
    make_private_dir(directory)
    fd = os.open(directory / _RUN_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _verify_failures(record: Any) -> list[str]:
    failures = _field(_field(record, "verify"), "failures") or []
    return [str(item) for item in failures] or ["no detail"]


def _error_text(exc: BaseException) -> str:
    """One line for an admin: a BackupError's own text; for anything else its type and first line."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if type(exc).__name__ == "BackupError":
        return first or "the backup failed"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _field(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def utc_now() -> datetime:
    return datetime.now(UTC)
