"""The server's audit scheduler on a driven clock (no real waiting): catch-up after start when the
last run is old, then every interval; a real child process stands in for ``hardmail audit``; a
child without a report is an error and the schedule goes on; stop ends a running child."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.server.audit_scheduler import AuditScheduler, LastRun, audit_command
from hardmail.server.child_job import MAX_NAP
from support.driven_sleep import DrivenSleep
from support.log_events import events

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REPORT = {"schema": "hardmail.audit/1", "target": "own", "score": 86, "worst": "high", "exit_status": 1,
          "counts": {"critical": 0, "high": 1, "medium": 1, "low": 0, "ok": 20, "info": 3}, "findings": []}


def make_config(tmp_path: Path, hours: float = 24.0) -> Config:
    return Config.model_validate({"server": {"data_dir": str(tmp_path / "data")}, "audit": {"interval_hours": hours}})


def child(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text("import json, sys, pathlib\n" + body)
    return [sys.executable, str(script)]


def reporting_child(tmp_path: Path, status: int = 1) -> list[str]:
    marker = tmp_path / "ran"
    return child(tmp_path, f"with open({str(marker)!r}, 'a') as f: f.write('run\\n')\n"
                           f"sys.stderr.write('audit child log line\\n')\n"
                           f"print(json.dumps({REPORT!r}))\nsys.exit({status})\n")


def last_run(at: datetime | None) -> LastRun:
    async def read() -> datetime | None:
        return at
    return read


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START.timestamp())


async def test_catch_up_soon_after_start_when_there_never_was_a_run(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = AuditScheduler(make_config(tmp_path), last_run(None), clock=clock, catch_up_delay=300)
    assert await scheduler.first_due() == (START + timedelta(seconds=300), "catch-up")


async def test_catch_up_when_the_last_run_is_older_than_the_interval(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = AuditScheduler(make_config(tmp_path), last_run(START - timedelta(hours=25)), clock=clock,
                               catch_up_delay=300)
    assert await scheduler.first_due() == (START + timedelta(seconds=300), "catch-up")


async def test_an_unreadable_history_means_a_catch_up(tmp_path: Path, clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> datetime | None:
        raise RuntimeError("no such table: audit_runs")

    scheduler = AuditScheduler(make_config(tmp_path), broken, clock=clock, catch_up_delay=300)
    assert (await scheduler.first_due())[1] == "catch-up"
    assert events(caplog, "audit.history_unreadable")[0]["level"] == "warning"


async def test_after_a_recent_run_it_waits_one_interval_then_runs_the_child(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    driven = DrivenSleep(clock)
    scheduler = AuditScheduler(make_config(tmp_path, hours=6), last_run(START - timedelta(hours=1)), clock=clock,
                               sleep=driven.sleep, command=reporting_child(tmp_path))
    await scheduler.start()
    try:
        naps = []
        while not scheduler.runs:
            naps.append(await driven.nap())
        assert sum(naps[:-1]) == 5 * 3600 and max(naps) <= MAX_NAP  # 6 h after the last run, not before
        assert (tmp_path / "ran").read_text() == "run\n"
        [run] = scheduler.runs
        assert (run.reason, run.exit_status, run.report) == ("scheduled", 1, REPORT)
        assert scheduler.next_due == START + timedelta(hours=11)
    finally:
        await scheduler.stop()
    [logged] = events(caplog, "audit.run")
    assert (logged["level"], logged["score"], logged["worst"], logged["counts"]) == (
        "warning", 86, "high", REPORT["counts"])
    assert "audit child log line\n" in capfd.readouterr().err


async def test_a_child_without_a_report_is_an_error_and_the_schedule_goes_on(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    driven = DrivenSleep(clock)
    scheduler = AuditScheduler(make_config(tmp_path, hours=1), last_run(None), clock=clock, sleep=driven.sleep,
                               command=child(tmp_path, "print('not json')\nsys.exit(1)\n"), catch_up_delay=10)
    await scheduler.start()
    try:
        assert await driven.nap() == 10
        await driven.nap()  # the next nap is asked for: the scheduler lives on
        [run] = scheduler.runs
        assert (run.reason, run.exit_status, run.report) == ("catch-up", 1, None)
        assert scheduler.next_due == START + timedelta(seconds=10, hours=1)
    finally:
        await scheduler.stop()
    [failed] = events(caplog, "audit.failed")
    assert failed["level"] == "error" and "status 1 without a report" in str(failed["error"])


async def test_a_child_that_cannot_start_is_an_error(tmp_path: Path, clock: FakeClock,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    scheduler = AuditScheduler(make_config(tmp_path), last_run(None), clock=clock, command=[str(tmp_path / "none")])
    run = await scheduler.run_now()
    assert run is not None and run.exit_status == -1
    assert "cannot start the audit process" in str(events(caplog, "audit.failed")[0]["error"])


async def test_never_two_at_once_and_stop_ends_the_child(tmp_path: Path, clock: FakeClock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    command = child(tmp_path, f"import os, time\nopen({str(ready)!r}, 'w').write(str(os.getpid()))\n"
                              "time.sleep(600)\n")
    scheduler = AuditScheduler(make_config(tmp_path), last_run(START), clock=clock, command=command,
                               sleep=DrivenSleep(clock).sleep, kill_grace=5)
    await scheduler.start()
    first = asyncio.create_task(scheduler.run_now("manual"))
    pid = int(await asyncio.wait_for(asyncio.to_thread(ready.read_text), 30))
    assert await scheduler.run_now("again") is None
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await scheduler.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert [e["reason"] for e in events(caplog, "audit.skipped")] == ["again"]
    assert events(caplog, "audit.run")[0]["result"] == "interrupted"


def test_the_child_command(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    command = audit_command(config, tmp_path / "hardmail.toml")
    assert command[1:] == ["-m", "hardmail", "audit", "--json", "--record", "--scheduled", "--data-dir",
                           str(tmp_path / "data"), "--config", str(tmp_path / "hardmail.toml")]
