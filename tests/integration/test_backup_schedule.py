"""Scheduled backups in a real server: the scheduler runs in exactly one process of `hardmail
serve` (whatever the worker count), runs the real `hardmail backup run` in a child process,
`hardmail status` shows the backup health, and `hardmail backup run` records what it did.

Runs are triggered through the scheduler's `run_now` (in-process server) or the command itself,
never by waiting for the clock."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.ops.backup.health import read_health
from support.cli_process import LoggedServe, cli_env, run_cli, serving
from support.live import EPHEMERAL_LISTEN, running_server, server_config

CORE_MERGED = importlib.util.find_spec("hardmail.ops.backup.create") is not None
needs_core = pytest.mark.skipif(not CORE_MERGED, reason="the backup core (create, catalog) is not merged yet")


def write_config(tmp_path: Path, workers: int, **backup: Any) -> Path:
    raw = {"server": {"hostname": "mail.example.test", "data_dir": str(tmp_path / "data"), "workers": workers},
           "listen": dict(EPHEMERAL_LISTEN), "logging": {"format": "json"},
           "inbound": {"enabled": False}, "antispam": {"enabled": False}, "queue": {"run_delivery": False},
           "backup": {"schedule": "03:00", "timezone": "Europe/Berlin", **backup}}
    path = tmp_path / "hardmail.toml"
    path.write_text(tomli_w.dumps(raw))
    return path


def log_events(stderr: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if f'"{name}"' in line:
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_the_scheduler_runs_in_exactly_one_process(tmp_path: Path, workers: int) -> None:
    server = LoggedServe(write_config(tmp_path, workers))
    seen: list[dict[str, Any]] = []
    try:
        while sum(e["event"] == "server.start" for e in seen) < workers or not _named(seen, "backup.scheduler_started"):
            seen.append(server.wait_for_any())
    finally:
        server.stop()
    seen += server.drain()
    [started] = _named(seen, "backup.scheduler_started")
    assert (started["schedule"], started["timezone"], started["reason"]) == ("03:00", "Europe/Berlin", "catch-up")
    assert len(_named(seen, "server.start")) == workers  # every process started, one scheduled


def _named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in events if event.get("event") == name]


def test_no_scheduler_and_a_warning_when_backups_are_off(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1, enabled=False)
    with serving("--config", str(config), cwd=tmp_path, env=cli_env()) as server:
        pass
    assert log_events(server.stderr, "backup.scheduler_started") == []
    assert any("backup.enabled is false" in line for line in server.started)


def test_status_shows_the_backup_health_and_backup_run_records_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1)
    with serving("--config", str(config), cwd=tmp_path, env=cli_env()):
        before = json.loads(run_cli("status", "--json", "--config", str(config), cwd=tmp_path).stdout)["backup"]
        text = run_cli("status", "--config", str(config), cwd=tmp_path).stdout
        ran = run_cli("backup", "run", "--json", "--config", str(config), cwd=tmp_path)
        after = json.loads(run_cli("status", "--json", "--config", str(config), cwd=tmp_path).stdout)["backup"]
    assert (before["enabled"], before["last_good_backup_at"], before["overdue"]) == (True, None, True)
    assert datetime.fromisoformat(before["next_run"]).strftime("%H:%M") == "03:00"
    assert "backups      no good (verified) backup yet" in text and "Europe/Berlin" in text
    outcome = json.loads(ran.stdout)
    assert ran.returncode == (0 if outcome["result"] == "ok" else 1), ran.stderr
    health = read_health(tmp_path / "data")
    assert health is not None and after["last_result"] == health.last_result == outcome["result"]
    assert after["last_attempt_at"] == health.to_json()["last_attempt_at"]
    if outcome["result"] == "ok":
        assert after["last_good_backup_at"] is not None and not after["overdue"]
        assert after["last_archive"] == outcome["archive"]
    else:
        assert after["last_error"] == outcome["error"] != ""


def test_status_of_a_stopped_server_still_shows_a_recorded_failure(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("domain", "add", "example.org", "-d", str(data), cwd=tmp_path).returncode == 0
    (tmp_path / "blocker").write_text("")
    env = cli_env(HARDMAIL_BACKUP__DESTINATION=str(tmp_path / "blocker" / "backups"))
    ran = run_cli("backup", "run", "-d", str(data), cwd=tmp_path, env=env)
    assert ran.returncode == 1
    assert ran.stderr.splitlines()[-2].startswith("error: the ") and "backup failed" in ran.stderr
    status = run_cli("status", "-d", str(data), cwd=tmp_path, env=env)
    assert status.returncode == 3
    assert "no good (verified) backup yet" in status.stdout and "failed: NotADirectoryError" in status.stdout


def test_the_scheduler_runs_the_real_backup_command(tmp_path: Path) -> None:
    with running_server(server_config(tmp_path / "data")) as live:
        assert live.server is not None and live.server.backups is not None
        report = live.run(live.server.backups.run_now("test"), timeout=300)
    assert report is not None and report.outcome is not None, "the child printed no outcome"
    health = read_health(tmp_path / "data")
    assert health is not None and health.last_result == report.outcome.result
    assert report.exit_status == (0 if report.outcome.result == "ok" else 1)
    if CORE_MERGED:
        assert report.outcome.result == "ok", report.outcome.error
        assert report.outcome.kind == "full"


@needs_core
def test_a_scheduled_run_makes_a_verified_archive_in_the_destination(tmp_path: Path) -> None:
    config = write_config(tmp_path, 1, destination=str(tmp_path / "archives"))
    assert run_cli("domain", "add", "example.org", "--config", str(config), cwd=tmp_path).returncode == 0
    first = json.loads(run_cli("backup", "run", "--json", "--config", str(config), cwd=tmp_path).stdout)
    second = json.loads(run_cli("backup", "run", "--json", "--config", str(config), cwd=tmp_path).stdout)
    assert (first["result"], first["kind"], second["result"], second["kind"]) == ("ok", "full", "ok", "incremental")
    assert {p.name for p in (tmp_path / "archives").iterdir()} >= {f"{first['archive']}.json",
                                                                 f"{second['archive']}.json"}
