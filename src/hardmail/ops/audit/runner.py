"""Running the audit: every check module of :mod:`.catalog` under a deadline, and the report.

- Probe modules (they talk to listeners) run one after the other: the server limits connections
  per source address (``[access.limits]`` connections_per_ip, new_connections_per_minute), and
  probes of several modules at once against the same listeners could meet those limits and read
  a refusal as a finding. Configuration, data and DNS checks run concurrently with them.
- Without targets (no server running, nothing named) probe modules do not run: their checks are
  INFO findings ("not checked") saying why.
- A module that raises or misses its deadline gives one ``medium`` finding "check failed:
  <ExceptionName>" per check of it (never a traceback: the error goes to the log, event
  ``audit.check_failed``); a check id the module did not report becomes an INFO finding.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hardmail.ops.audit.catalog import CheckModule, check_modules
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import (
    CheckInfo,
    Finding,
    Severity,
    exit_status,
    score,
    sorted_findings,
    worst,
)
from hardmail.ops.log import log_event
from hardmail.store.ports_security import AuditRun

MIN_MODULE_DEADLINE = 120.0  # seconds a module may take at least
STEPS_PER_MODULE = 30  # a module's deadline: this many network steps of ctx.timeout, at least the minimum
OWN_TARGET = "own"  # the target label of the server's own audit
RERUN_FIX = ("run `hardmail audit` again; if the check fails again, the log line of event "
             "audit.check_failed says where (a bug to report)")
# (module name, "start" or "done"): for a progress display
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class AuditReport:
    started_at: datetime
    finished_at: datetime
    target: str  # "own", or the --target list as the admin gave it
    findings: tuple[Finding, ...]  # worst first

    @property
    def score(self) -> int:
        return score(self.findings)

    @property
    def worst(self) -> Severity:
        return worst(self.findings)

    @property
    def exit_status(self) -> int:
        return exit_status(self.findings)

    def counts(self) -> dict[str, int]:
        """How many findings of each severity (every severity named, worst first)."""
        found = {severity.value: 0 for severity in Severity}
        for finding in self.findings:
            found[finding.severity.value] += 1
        return found

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat(), "score": self.score, "worst": self.worst.value,
                "exit_status": self.exit_status, "counts": self.counts(),
                "findings": [finding.to_json() for finding in self.findings]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditReport:
        return cls(datetime.fromisoformat(data["started_at"]), datetime.fromisoformat(data["finished_at"]),
                   str(data["target"]), tuple(Finding.from_json(f) for f in data["findings"]))

    def to_run(self, trigger: str) -> AuditRun:
        """The record kept in the database (``trigger``: "cli" or "scheduled")."""
        return AuditRun(0, self.started_at, self.finished_at, self.target, trigger, self.score, self.worst.value,
                        json.dumps([finding.to_json() for finding in self.findings]))

    @classmethod
    def from_run(cls, run: AuditRun) -> AuditReport:
        findings = tuple(Finding.from_json(f) for f in json.loads(run.findings_json))
        return cls(run.started_at, run.finished_at, run.target, findings)


def module_deadline(ctx: AuditContext) -> float:
    return max(MIN_MODULE_DEADLINE, ctx.timeout * STEPS_PER_MODULE)


async def run_audit(ctx: AuditContext, modules: Sequence[CheckModule] | None = None, *, target: str = OWN_TARGET,
                    deadline: float | None = None, progress: Progress | None = None) -> AuditReport:
    """Run ``modules`` (every module of the catalog by default) and gather their findings."""
    chosen = check_modules() if modules is None else list(modules)
    limit = module_deadline(ctx) if deadline is None else deadline
    started = _now(ctx)
    probes = [m for m in chosen if m.probes]
    others = [m for m in chosen if not m.probes]
    probed, *checked = await asyncio.gather(_run_in_turn(ctx, probes, limit, progress),
                                            *(_wrap(_run_one(ctx, m, limit, progress), m.name) for m in others))
    by_module = dict(probed + [pair for pairs in checked for pair in pairs])
    findings = [f for m in chosen for f in by_module[m.name]]
    return AuditReport(started, _now(ctx), target, tuple(sorted_findings(findings)))


def _now(ctx: AuditContext) -> datetime:
    return datetime.fromtimestamp(ctx.clock.now(), UTC)


async def _run_in_turn(ctx: AuditContext, modules: Sequence[CheckModule], limit: float,
                       progress: Progress | None) -> list[tuple[str, list[Finding]]]:
    """Probe modules one after the other (see the module docstring)."""
    return [(module.name, await _run_one(ctx, module, limit, progress)) for module in modules]


async def _wrap(running: Awaitable[list[Finding]], name: str) -> list[tuple[str, list[Finding]]]:
    return [(name, await running)]


async def _run_one(ctx: AuditContext, module: CheckModule, limit: float, progress: Progress | None) -> list[Finding]:
    if module.probes and not ctx.targets:
        why = "no server is running to probe" if not ctx.running else "no listener to probe"
        return [check.skipped(why) for check in module.checks]
    if progress is not None:
        progress(module.name, "start")
    try:
        found = await asyncio.wait_for(module.run(ctx), limit)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure of a check module: a finding, never a crash of the audit
        _log_failure(ctx, module, exc, limit)
        found = [_failed(check, exc, limit) for check in module.checks]
    finally:
        if progress is not None:
            progress(module.name, "done")
    return complete(module.checks, found)


def _failed(check: CheckInfo, exc: Exception, limit: float) -> Finding:
    name = type(exc).__name__
    evidence = f"check failed: {name}"
    if isinstance(exc, TimeoutError):
        evidence += f" (it did not finish within {limit:g} s)"
    return check.finding(Severity.MEDIUM, evidence, RERUN_FIX)


def _log_failure(ctx: AuditContext, module: CheckModule, exc: Exception, limit: float) -> None:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    detail = str(exc)[:300]
    if ctx.login is not None and ctx.login.password and ctx.login.password in str(exc):
        detail = "(withheld: it contained the probe account's password)"
    log_event("audit.check_failed", level="error", module=module.name, error=type(exc).__name__,
              where=where, detail=detail, deadline=limit if isinstance(exc, TimeoutError) else None,
              checks=[check.id for check in module.checks])


def complete(checks: Iterable[CheckInfo], findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` plus an INFO finding for every check of ``checks`` that has none."""
    found = list(findings)
    reported = {finding.check for finding in found}
    missing = [check.skipped("the check gave no result") for check in checks if check.id not in reported]
    return found + missing
