"""Scheduled backups inside the server: an asyncio task, in exactly one process of the server
(the one that runs the outbound queue: the only process, or worker 0), that sleeps until the next
time of ``backup.schedule`` and then runs ``hardmail backup run`` in a child process, so that the
CPU, memory and file reads of a backup never touch a process that serves mail.

- The child's standard error (its log lines when the server logs to standard error, and anything
  unexpected) is passed on to the server's standard error line by line; its standard output is the
  JSON outcome, logged as one ``backup.run`` event. A child that ends without an outcome is an
  error-level ``backup.failed`` and is recorded in the health state.
- One run at a time: :meth:`BackupScheduler.run_now` while a run is going returns None; the
  child itself also refuses to overlap any other backup of the data directory (a lock).
- A failure never stops the scheduler: the next scheduled time runs again.
- On server stop the child gets SIGTERM (it stops and records the attempt as interrupted), then
  SIGKILL after a grace period; its whole process group goes (pg_dump included).
- Catch-up: at start, when there never was a good backup or the last good one is older than one
  schedule period (the server was down when it should have run), a backup runs
  ``catch_up_delay`` seconds after start (5 minutes: the start-up work is done by then), unless
  the schedule comes sooner.
- Sleeping follows the wall clock in naps of at most ``MAX_NAP`` seconds, so that a clock that is
  set or a machine that was suspended does not make a run late. Time comes from the injected
  clock and the naps from the injected ``sleep``, so that tests drive the schedule without waiting.
  The naps, the loop and the child process are :mod:`hardmail.server.child_job`'s (shared with the audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from hardmail.config.schema import Config
from hardmail.core.clock import Clock
from hardmail.ops.backup import health
from hardmail.ops.backup.schedule import Schedule, catch_up_due, next_run, parse_schedule, resolve_timezone
from hardmail.ops.backup.scheduled import ScheduledOutcome
from hardmail.ops.log import log_event
from hardmail.server.child_job import KILL_GRACE, ChildScheduler, Sleep, hardmail_command, run_child
from hardmail.server.child_job import MAX_NAP as MAX_NAP
from hardmail.server.child_job import config_file_in_use as config_file_in_use

CATCH_UP_DELAY = 300.0  # seconds after start before a catch-up backup


@dataclass(frozen=True)
class RunReport:
    """One run of the child: why it ran, its exit status and its outcome (None when it printed none)."""

    reason: str
    exit_status: int
    outcome: ScheduledOutcome | None
    error: str = ""  # why there is no outcome, when the child could not even start


class BackupScheduler(ChildScheduler):
    """Runs ``hardmail backup run`` on the schedule of ``config.backup``; see the module docstring."""

    name = "backup"

    def __init__(self, config: Config, *, clock: Clock | None = None, sleep: Sleep = asyncio.sleep,
                 config_file: Path | None = None, command: Sequence[str] | None = None,
                 catch_up_delay: float = CATCH_UP_DELAY, kill_grace: float = KILL_GRACE) -> None:
        self.config = config
        self.schedule: Schedule = parse_schedule(config.backup.schedule)
        self.zone: tzinfo = resolve_timezone(config.backup.timezone)
        super().__init__(command if command is not None else backup_command(config, config_file), clock=clock,
                         sleep=sleep, catch_up_delay=catch_up_delay, kill_grace=kill_grace)
        self._child: asyncio.subprocess.Process | None = None
        self.runs: list[RunReport] = []

    async def start(self) -> None:
        due, reason = self.first_due()
        log_event("backup.scheduler_started", schedule=self.config.backup.schedule, timezone=str(self.zone),
                  next=due.isoformat(), reason=reason)
        self._start_loop(due, reason)

    def following(self, after: datetime) -> datetime:
        return next_run(self.schedule, after, self.zone)

    def first_due(self) -> tuple[datetime, str]:
        """When the first run after start is due, and why (``scheduled`` or ``catch-up``)."""
        now = self.now()
        scheduled = next_run(self.schedule, now, self.zone)
        try:
            state = health.read_health(self.config.data_dir)
        except OSError:  # an unreadable state must not stop the server: the backup will say why
            state = None
        if catch_up_due(self.schedule, state.last_good_backup_at if state else None, now):
            soon = datetime.fromtimestamp(self._clock.now() + self._catch_up_delay, UTC)
            if soon < scheduled:
                return soon, "catch-up"
        return scheduled, "scheduled"

    async def run_now(self, reason: str = "manual") -> RunReport | None:
        """Run one backup child now and wait for it; None when one is running already."""
        if self._running.locked():
            log_event("backup.skipped", level="warning", reason=reason, detail="a backup is running already")
            return None
        async with self._running:
            report = await self._run_child(reason)
            self.runs.append(report)
            self._log_report(report)
            return report

    async def _run_child(self, reason: str) -> RunReport:
        result = await run_child(self._command, kill_grace=self._kill_grace, watch=self._watch,
                                 on_interrupted=_log_interrupted)
        if result.exit_status == -1 and result.error:
            return RunReport(reason, -1, None, f"cannot start the backup process: {result.error}")
        return RunReport(reason, result.exit_status, _parse_outcome(result.stdout))

    def _watch(self, child: asyncio.subprocess.Process | None) -> None:
        self._child = child
        super()._watch(child)

    def _log_report(self, report: RunReport) -> None:
        outcome = report.outcome
        if outcome is None:
            self._record_crash(report.error or f"the backup process ended with status {report.exit_status} "
                               "without a result (its output is in the server's standard error)")
            return
        level = "info" if report.exit_status == 0 else ("warning" if outcome.result == "skipped" else "error")
        log_event("backup.run", level=level, reason=report.reason, result=outcome.result, kind=outcome.kind,
                  archive=outcome.archive, pruned=len(outcome.pruned), seconds=outcome.seconds,
                  exit_status=report.exit_status, error=outcome.error or None)

    def _record_crash(self, error: str) -> None:
        log_event("backup.failed", level="error", reason="scheduled", error=error)
        with contextlib.suppress(OSError):
            health.record_attempt(self.config.data_dir, ok=False, verified=False, archive=None, error=error,
                                  at=self.now())


def backup_command(config: Config, config_file: Path | None = None) -> list[str]:
    """``python -m hardmail backup run --json --from-server --data-dir D [--config F]``."""
    return hardmail_command(config_file, "backup", "run", "--json", "--from-server", "--data-dir", str(config.data_dir))


def _log_interrupted(pid: int) -> None:
    log_event("backup.run", level="warning", result="interrupted", pid=pid,
              detail="the server stopped during the backup")


def _parse_outcome(stdout: bytes) -> ScheduledOutcome | None:
    try:
        value: Any = json.loads(stdout)
        return ScheduledOutcome.from_json(value) if isinstance(value, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
