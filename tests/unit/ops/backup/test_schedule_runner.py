"""The server's backup scheduler: it waits for the schedule on a driven clock (no real waiting),
runs a real child process, survives failures, never runs two at once, and ends its child on stop.

The children here are small Python programs standing in for ``hardmail backup run`` (whose own
run is tested in test_schedule_run.py and tests/integration/test_backup_schedule.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.ops.backup.health import read_health, record_attempt
from hardmail.server.backup_scheduler import MAX_NAP, BackupScheduler, backup_command, config_file_in_use
from support.driven_sleep import DrivenSleep
from support.log_events import events

START = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)
OK_OUTCOME = {"result": "ok", "started_at": "x", "seconds": 0.5, "kind": "full", "archive": "hardmail-a-full",
              "error": "", "pruned": ["hardmail-old-full"]}


def make_config(tmp_path: Path, schedule: str = "03:00") -> Config:
    return Config.model_validate({"server": {"data_dir": str(tmp_path / "data")},
                                  "backup": {"schedule": schedule, "timezone": "UTC"}})


def child(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "child.py"
    script.write_text("import json, os, signal, sys, pathlib\n" + body)
    return [sys.executable, str(script)]


def printing_child(tmp_path: Path, outcome: dict[str, object] = OK_OUTCOME, status: int = 0) -> list[str]:
    marker = tmp_path / "ran"
    return child(tmp_path, f"with open({str(marker)!r}, 'a') as f: f.write('run\\n')\n"
                           f"sys.stderr.write('child log line\\n')\n"
                           f"print(json.dumps({outcome!r}))\nsys.exit({status})\n")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START.timestamp())


@pytest.fixture
def good_backup_an_hour_ago(tmp_path: Path) -> Iterator[None]:
    record_attempt(tmp_path / "data", ok=True, verified=True, archive="a", at=START - timedelta(hours=1))
    yield


# --- when --------------------------------------------------------------------------------------

@pytest.mark.usefixtures("good_backup_an_hour_ago")
async def test_it_waits_for_the_scheduled_time_then_runs_the_child(tmp_path: Path, clock: FakeClock,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    driven = DrivenSleep(clock)
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, sleep=driven.sleep,
                                command=printing_child(tmp_path))
    await scheduler.start()
    try:
        assert scheduler.first_due() == (datetime(2026, 1, 10, 3, 0, tzinfo=UTC), "scheduled")
        naps = []
        while not scheduler.runs:  # the nap after the run is asked for only once the run is over
            naps.append(await driven.nap())
        assert sum(naps[:-1]) == 2 * 3600 and max(naps) <= MAX_NAP  # it ran at 03:00, not before
        assert (tmp_path / "ran").read_text() == "run\n"
        [report] = scheduler.runs
        assert (report.reason, report.exit_status) == ("scheduled", 0)
        assert report.outcome is not None and report.outcome.archive == "hardmail-a-full"
        assert scheduler.next_due == datetime(2026, 1, 11, 3, 0, tzinfo=UTC)
    finally:
        await scheduler.stop()
    [run] = events(caplog, "backup.run")
    assert (run["level"], run["result"], run["archive"], run["pruned"]) == ("info", "ok", "hardmail-a-full", 1)


def test_catch_up_soon_after_start_when_there_never_was_a_good_backup(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, catch_up_delay=300)
    assert scheduler.first_due() == (START + timedelta(seconds=300), "catch-up")


def test_catch_up_when_the_last_good_backup_is_older_than_a_period(tmp_path: Path, clock: FakeClock) -> None:
    record_attempt(tmp_path / "data", ok=True, verified=True, archive="a", at=START - timedelta(hours=25))
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, catch_up_delay=300)
    assert scheduler.first_due() == (START + timedelta(seconds=300), "catch-up")
    record_attempt(tmp_path / "data", ok=False, verified=False, archive=None, error="x", at=START)
    assert scheduler.first_due()[1] == "catch-up"  # a failed attempt is no backup


@pytest.mark.usefixtures("good_backup_an_hour_ago")
def test_no_catch_up_after_a_recent_good_backup(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock)
    assert scheduler.first_due() == (datetime(2026, 1, 10, 3, 0, tzinfo=UTC), "scheduled")


def test_the_schedule_wins_when_it_comes_before_the_catch_up(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 1, 10, 2, 58, tzinfo=UTC).timestamp())
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, catch_up_delay=300)
    assert scheduler.first_due() == (datetime(2026, 1, 10, 3, 0, tzinfo=UTC), "scheduled")


async def test_a_catch_up_run_then_follows_the_schedule(tmp_path: Path, clock: FakeClock) -> None:
    driven = DrivenSleep(clock)
    scheduler = BackupScheduler(make_config(tmp_path, "every 6h"), clock=clock, sleep=driven.sleep,
                                command=printing_child(tmp_path), catch_up_delay=60)
    await scheduler.start()
    try:
        assert await driven.nap() == 60
        await driven.nap()
        assert [r.reason for r in scheduler.runs] == ["catch-up"]
        assert scheduler.next_due == datetime(2026, 1, 10, 6, 0, tzinfo=UTC)
    finally:
        await scheduler.stop()


# --- failures ----------------------------------------------------------------------------------

async def test_a_child_without_a_result_is_a_recorded_failure_and_the_schedule_goes_on(
        tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    driven = DrivenSleep(clock)
    scheduler = BackupScheduler(make_config(tmp_path, "hourly"), clock=clock, sleep=driven.sleep,
                                command=child(tmp_path, "sys.exit(3)\n"), catch_up_delay=10)
    await scheduler.start()
    try:
        await driven.nap()
        await driven.nap()  # the next one is asked for: the scheduler lives on
        [report] = scheduler.runs
        assert (report.exit_status, report.outcome) == (3, None)
    finally:
        await scheduler.stop()
    [failed] = events(caplog, "backup.failed")
    assert failed["level"] == "error" and "status 3" in str(failed["error"])
    state = read_health(tmp_path / "data")
    assert state is not None and state.last_result == "failed" and "status 3" in state.last_error


async def test_a_child_that_cannot_start_is_a_recorded_failure(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, command=[str(tmp_path / "missing")])
    report = await scheduler.run_now()
    assert report is not None and report.exit_status == -1
    state = read_health(tmp_path / "data")
    assert state is not None and "cannot start the backup process" in state.last_error


async def test_a_failed_backup_reported_by_the_child_is_an_error(tmp_path: Path, clock: FakeClock,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    outcome = {**OK_OUTCOME, "result": "failed", "archive": None, "error": "disk full", "pruned": []}
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, command=printing_child(tmp_path, outcome, 1))
    await scheduler.run_now()
    [run] = events(caplog, "backup.run")
    assert (run["level"], run["result"], run["error"]) == ("error", "failed", "disk full")
    assert events(caplog, "backup.failed") == []  # the child logged and recorded its own failure


async def test_the_childs_standard_error_is_passed_on(tmp_path: Path, clock: FakeClock,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, command=printing_child(tmp_path))
    await scheduler.run_now()
    assert "child log line\n" in capfd.readouterr().err


# --- one at a time, and stopping ----------------------------------------------------------------

def blocking_child(tmp_path: Path, ignore_term: bool = False) -> tuple[list[str], Path, Path]:
    """A child that says it is ready (a FIFO), then waits for the test to release it (another)."""
    ready, release = tmp_path / "ready", tmp_path / "release"
    os.mkfifo(ready)
    os.mkfifo(release)
    body = ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
    body += (f"open({str(ready)!r}, 'w').close()\n"
             f"open({str(release)!r}).read()\n"
             f"print(json.dumps({OK_OUTCOME!r}))\n")
    return child(tmp_path, body), ready, release


async def wait_ready(ready: Path) -> None:
    await asyncio.wait_for(asyncio.to_thread(ready.read_text), 30)


async def test_never_two_at_once(tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    command, ready, release = blocking_child(tmp_path)
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, command=command)
    first = asyncio.create_task(scheduler.run_now("scheduled"))
    await wait_ready(ready)
    assert await scheduler.run_now("manual") is None
    await asyncio.wait_for(asyncio.to_thread(release.write_text, ""), 30)
    report = await asyncio.wait_for(first, 30)
    assert report is not None and report.outcome is not None and report.outcome.result == "ok"
    assert [e["reason"] for e in events(caplog, "backup.skipped")] == ["manual"]


@pytest.mark.parametrize("ignore_term", [False, True], ids=["terminated", "killed"])
async def test_stop_ends_the_running_child(tmp_path: Path, clock: FakeClock, ignore_term: bool,
                                           caplog: pytest.LogCaptureFixture) -> None:
    command, ready, _release = blocking_child(tmp_path, ignore_term)
    driven = DrivenSleep(clock)
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, sleep=driven.sleep, command=command,
                                catch_up_delay=1, kill_grace=0.2)
    await scheduler.start()
    await driven.nap()
    await wait_ready(ready)
    child_process = scheduler._child
    assert child_process is not None
    await asyncio.wait_for(scheduler.stop(), 30)
    assert child_process.returncode == (-signal.SIGKILL if ignore_term else -signal.SIGTERM)
    with pytest.raises(ProcessLookupError):
        os.kill(child_process.pid, 0)
    [run] = events(caplog, "backup.run")
    assert run["result"] == "interrupted"
    assert scheduler.runs == []


async def test_stop_without_a_start_and_twice(tmp_path: Path, clock: FakeClock) -> None:
    scheduler = BackupScheduler(make_config(tmp_path), clock=clock, sleep=DrivenSleep(clock).sleep)
    await scheduler.stop()
    await scheduler.start()
    await scheduler.stop()
    await scheduler.stop()


# --- the command --------------------------------------------------------------------------------

def test_the_child_command(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    command = backup_command(config, tmp_path / "hardmail.toml")
    assert command == [sys.executable, "-m", "hardmail", "backup", "run", "--json", "--from-server",
                       "--data-dir", str(tmp_path / "data"), "--config", str(tmp_path / "hardmail.toml")]


def test_the_config_file_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDMAIL_CONFIG", raising=False)
    assert config_file_in_use() is None
    (tmp_path / "hardmail.toml").write_text("")
    assert config_file_in_use() == tmp_path / "hardmail.toml"
    monkeypatch.setenv("HARDMAIL_CONFIG", "other.toml")
    assert config_file_in_use() == tmp_path / "other.toml"
