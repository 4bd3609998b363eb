"""The audit's runner on fake check modules: a crash or a missed deadline becomes a finding (no
traceback), a check id a module does not report becomes INFO, probe modules need targets and run
one at a time, and the report's score, exit status and JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.msgauth.dns import StaticResolver
from hardmail.ops.audit.catalog import CheckModule
from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.runner import AuditReport, run_audit

RELAY = CheckInfo("relay.open", 8, "Open relay", "Spammers use it.", "remove the range")
RELAY_FORMS = CheckInfo("relay.forms", 8, "Relay address forms", "Tricks.", "nothing")
CONFIG = CheckInfo("config.tls", 3, "TLS settings", "Passwords travel.", "tls.minimum_version = '1.2'")
TARGET = ProbeTarget("smtp", "127.0.0.1", 2525)
SECRET = "probe-password-never-shown"


def module(name: str, checks: tuple[CheckInfo, ...], run: Callable[[AuditContext], Awaitable[list[Finding]]],
           probes: bool = False) -> CheckModule:
    return CheckModule(name, probes, checks, run)


def context(tmp_path: Path, targets: tuple[ProbeTarget, ...] = (TARGET,), running: bool = True) -> AuditContext:
    config = Config.model_validate({"server": {"data_dir": str(tmp_path)}})
    return AuditContext(config, StaticResolver({}), targets, clock=FakeClock(1_800_000_000.0), running=running,
                        login=ProbeLogin("audit-probe-1@example.test", SECRET))


async def crash(ctx: AuditContext) -> list[Finding]:
    raise RuntimeError(f"boom with {SECRET} inside")


async def test_a_crashing_module_gives_a_medium_finding_per_check_and_no_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    report = await run_audit(context(tmp_path), [module("probe_relay", (RELAY, RELAY_FORMS), crash, probes=True)])
    assert [(f.check, f.severity, f.evidence) for f in report.findings] == [
        ("relay.forms", Severity.MEDIUM, "check failed: RuntimeError"),
        ("relay.open", Severity.MEDIUM, "check failed: RuntimeError")]
    text = json.dumps(report.to_json())
    assert "Traceback" not in text and "boom" not in text
    [logged] = [json.loads(r.getMessage()) for r in caplog.records if "audit.check_failed" in r.getMessage()]
    assert (logged["level"], logged["module"], logged["error"]) == ("error", "probe_relay", "RuntimeError")
    assert SECRET not in caplog.text  # the exception's text named the password: withheld


async def test_a_module_past_its_deadline_is_a_failed_check(tmp_path: Path) -> None:
    async def hang(ctx: AuditContext) -> list[Finding]:
        await asyncio.Event().wait()
        return []

    report = await run_audit(context(tmp_path), [module("checks_config", (CONFIG,), hang)], deadline=0.05)
    [finding] = report.findings
    assert finding.severity is Severity.MEDIUM
    assert finding.evidence.startswith("check failed: TimeoutError")


async def test_a_check_without_a_result_is_info(tmp_path: Path) -> None:
    async def half(ctx: AuditContext) -> list[Finding]:
        return [RELAY.finding(Severity.CRITICAL, "relayed", target=TARGET.label)]

    report = await run_audit(context(tmp_path), [module("probe_relay", (RELAY, RELAY_FORMS), half, probes=True)])
    by_id = {f.check: f for f in report.findings}
    assert by_id["relay.open"].severity is Severity.CRITICAL
    assert by_id["relay.forms"].severity is Severity.INFO
    assert (report.score, report.worst, report.exit_status) == (75, Severity.CRITICAL, 1)


async def test_probe_modules_do_not_run_without_targets(tmp_path: Path) -> None:
    ran: list[str] = []

    async def probe(ctx: AuditContext) -> list[Finding]:
        ran.append("probe")
        return [RELAY.ok("refused")]

    async def config(ctx: AuditContext) -> list[Finding]:
        return [CONFIG.finding(Severity.LOW, "1.2 allowed")]

    modules = [module("probe_relay", (RELAY,), probe, probes=True), module("checks_config", (CONFIG,), config)]
    report = await run_audit(context(tmp_path, targets=(), running=False), modules)
    assert ran == []
    by_id = {f.check: f for f in report.findings}
    assert by_id["relay.open"].severity is Severity.INFO
    assert "no server is running" in by_id["relay.open"].evidence
    assert (by_id["config.tls"].severity, report.exit_status, report.score) == (Severity.LOW, 0, 99)


async def test_probe_modules_run_one_at_a_time_and_other_checks_alongside(tmp_path: Path) -> None:
    active: list[str] = []
    most = {"probes": 0}
    config_ran_during_probes = asyncio.Event()

    def probe(check: CheckInfo) -> Callable[[AuditContext], Awaitable[list[Finding]]]:
        async def run(ctx: AuditContext) -> list[Finding]:
            active.append(check.id)
            most["probes"] = max(most["probes"], len(active))
            await asyncio.sleep(0)  # let any other probe module start, if the runner allowed it
            await asyncio.sleep(0)
            active.remove(check.id)
            return [check.ok("refused", target=TARGET.label)]
        return run

    async def config(ctx: AuditContext) -> list[Finding]:
        if active:
            config_ran_during_probes.set()
        return [CONFIG.ok("fine")]

    modules = [module("probe_relay", (RELAY,), probe(RELAY), probes=True),
               module("probe_smuggling", (RELAY_FORMS,), probe(RELAY_FORMS), probes=True),
               module("checks_config", (CONFIG,), config)]
    report = await run_audit(context(tmp_path), modules)
    assert most["probes"] == 1
    assert config_ran_during_probes.is_set()
    assert {f.check for f in report.findings} == {"relay.open", "relay.forms", "config.tls"}
    assert report.exit_status == 0 and report.score == 100


async def test_the_report_round_trips_through_json_and_the_database_record(tmp_path: Path) -> None:
    async def found(ctx: AuditContext) -> list[Finding]:
        return [RELAY.finding(Severity.HIGH, "AUTH before TLS", target=TARGET.label, details=["a", "b"])]

    report = await run_audit(context(tmp_path), [module("probe_relay", (RELAY,), found, probes=True)], target="own")
    assert AuditReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    run = report.to_run("scheduled")
    assert (run.target, run.trigger, run.score, run.worst) == ("own", "scheduled", 90, "high")
    assert AuditReport.from_run(run) == report
    assert report.counts()["high"] == 1 and report.started_at.year == 2027
