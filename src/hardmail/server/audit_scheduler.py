"""Scheduled security audits inside the server: an asyncio task, in exactly one process of the
server (the one that runs the outbound queue: the only process, or worker 0), that runs
``hardmail audit --json --record --scheduled`` in a child process every ``audit.interval_hours``,
so that the probes' work and the checks' CPU never touch a process that serves mail.

- The child records its run in the database itself (``hardmail audit history``); its standard
  output is the JSON report, logged here as one ``audit.run`` event (score, worst severity, the
  count of each severity); its standard error (its log lines) is passed on to the server's. A
  report with high or critical findings is a warning-level event; a child that ends without a
  report is an error-level ``audit.failed``.
- One run at a time (:meth:`AuditScheduler.run_now` while one runs returns None); a failure never
  stops the schedule.
- Catch-up: at start, when the last run of the server's own audit is older than the interval (or
  there never was one), an audit runs ``catch_up_delay`` seconds after start (5 minutes: the
  start-up work is done by then); otherwise the next run is one interval after the last.
- On server stop the child gets SIGTERM, then SIGKILL after a grace period.
Waiting, the schedule loop and the child process are :mod:`hardmail.server.child_job`'s (shared with the backups);
time comes from the injected clock and the naps from the injected ``sleep``, for tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hardmail.config.schema import Config
from hardmail.core.clock import Clock
from hardmail.ops.log import log_event
from hardmail.server.child_job import KILL_GRACE, ChildScheduler, Sleep, hardmail_command, run_child
from hardmail.store.ports import Store

CATCH_UP_DELAY = 300.0  # seconds after start before a catch-up audit
LastRun = Callable[[], Awaitable[datetime | None]]


@dataclass(frozen=True)
class AuditRunReport:
    """One run of the child: why it ran, its exit status, its report (None when it printed none)."""

    reason: str
    exit_status: int
    report: dict[str, Any] | None = field(default=None, repr=False)
    error: str = ""


class AuditScheduler(ChildScheduler):
    """Runs ``hardmail audit`` every ``config.audit.interval_hours``; see the module docstring."""

    name = "audit"

    def __init__(self, config: Config, last_run_at: LastRun, *, clock: Clock | None = None,
                 sleep: Sleep = asyncio.sleep, config_file: Path | None = None,
                 command: Sequence[str] | None = None, catch_up_delay: float = CATCH_UP_DELAY,
                 kill_grace: float = KILL_GRACE) -> None:
        self.config = config
        self.interval = timedelta(hours=config.audit.interval_hours)
        self._last_run_at = last_run_at
        super().__init__(command if command is not None else audit_command(config, config_file), clock=clock,
                         sleep=sleep, catch_up_delay=catch_up_delay, kill_grace=kill_grace)
        self.runs: list[AuditRunReport] = []

    async def start(self) -> None:
        due, reason = await self.first_due()
        log_event("audit.scheduler_started", interval_hours=self.config.audit.interval_hours,
                  next=due.isoformat(), reason=reason)
        self._start_loop(due, reason)

    def following(self, after: datetime) -> datetime:
        return after + self.interval

    async def first_due(self) -> tuple[datetime, str]:
        """When the first run after start is due, and why (``scheduled`` or ``catch-up``)."""
        now = self.now()
        try:
            last = await self._last_run_at()
        except Exception as exc:  # an unreadable history must not stop the server: audit soon instead
            log_event("audit.history_unreadable", level="warning", error=type(exc).__name__, detail=str(exc)[:300])
            last = None
        if last is None or now - last > self.interval:
            return now + timedelta(seconds=self._catch_up_delay), "catch-up"
        return last + self.interval, "scheduled"

    async def run_now(self, reason: str = "manual") -> AuditRunReport | None:
        """Run one audit child now and wait for it; None when one is running already."""
        if self._running.locked():
            log_event("audit.skipped", level="warning", reason=reason, detail="an audit is running already")
            return None
        async with self._running:
            result = await run_child(self._command, kill_grace=self._kill_grace, watch=self._watch,
                                     on_interrupted=_log_interrupted)
            run = AuditRunReport(reason, result.exit_status, _parse_report(result.stdout), result.error)
            self.runs.append(run)
            _log_run(run)
            return run


def audit_command(config: Config, config_file: Path | None = None) -> list[str]:
    """``python -m hardmail audit --json --record --scheduled --data-dir D [--config F]``."""
    return hardmail_command(config_file, "audit", "--json", "--record", "--scheduled", "--data-dir",
                            str(config.data_dir))


async def last_own_run_at(store: Store) -> datetime | None:
    """When the server's own audit last finished, from the kept runs."""
    runs = await store.security.list_audit_runs(1, "own")
    return runs[0].finished_at if runs else None


def _parse_report(stdout: bytes) -> dict[str, Any] | None:
    try:
        value: Any = json.loads(stdout)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "score" in value and "counts" in value else None


def _log_run(run: AuditRunReport) -> None:
    report = run.report
    if report is None:
        error = (f"cannot start the audit process: {run.error}" if run.error else
                 f"the audit process ended with status {run.exit_status} without a report "
                 "(its output is in the server's standard error)")
        log_event("audit.failed", level="error", reason=run.reason, error=error)
        return
    log_event("audit.run", level="warning" if run.exit_status else "info", reason=run.reason,
              score=report.get("score"), worst=report.get("worst"), counts=report.get("counts"),
              exit_status=run.exit_status)


def _log_interrupted(pid: int) -> None:
    log_event("audit.run", level="warning", result="interrupted", pid=pid, detail="the server stopped during the audit")
