"""The backup part of `hardmail status`: the health state, its age, overdue, the next run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hardmail.admin import cli_status
from hardmail.config.schema import Config
from hardmail.ops.backup.health import health_path, record_attempt

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def make_config(tmp_path: Path, **backup: object) -> Config:
    return Config.model_validate({"server": {"data_dir": str(tmp_path)},
                                  "backup": {"timezone": "Europe/Berlin", **backup}})


def test_never_backed_up(tmp_path: Path) -> None:
    status = cli_status.backup_status(make_config(tmp_path), NOW)
    assert (status["last_good_backup_at"], status["age_seconds"], status["overdue"]) == (None, None, True)
    assert status["next_run"] == "2026-03-11T03:00:00+01:00"
    assert status["destination"] == str(tmp_path / "backups")


def test_a_recent_good_backup_is_not_overdue_an_old_one_is(tmp_path: Path) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="a", full=True, at=NOW - timedelta(hours=9))
    status = cli_status.backup_status(make_config(tmp_path), NOW)
    assert (status["age_seconds"], status["overdue"], status["last_archive"]) == (9 * 3600, False, "a")
    assert cli_status.backup_status(make_config(tmp_path), NOW + timedelta(hours=28))["overdue"]
    assert not cli_status.backup_status(make_config(tmp_path, enabled=False), NOW + timedelta(days=9))["overdue"]


def test_disabled_has_no_next_run(tmp_path: Path) -> None:
    status = cli_status.backup_status(make_config(tmp_path, enabled=False), NOW)
    assert (status["enabled"], status["next_run"]) == (False, None)


def printed(status: dict[str, Any] | None, capsys: pytest.CaptureFixture[str]) -> str:
    cli_status._print_backup(status)
    return capsys.readouterr().out


def test_the_text_names_the_last_good_one_and_the_last_failure(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="hardmail-a-full", at=NOW - timedelta(hours=5, minutes=3))
    text = printed(cli_status.backup_status(make_config(tmp_path), NOW), capsys)
    assert "backups      last good 2026-03-10T06:57:00+00:00 (5 h 3 min ago) hardmail-a-full" in text
    assert "next 2026-03-11T03:00:00+01:00 (schedule '03:00', Europe/Berlin)" in text
    record_attempt(tmp_path, ok=False, verified=False, archive=None, error="disk full", at=NOW)
    text = printed(cli_status.backup_status(make_config(tmp_path), NOW), capsys)
    assert "last attempt 2026-03-10T12:00:00+00:00 failed: disk full" in text
    assert printed(cli_status.backup_status(make_config(tmp_path, enabled=False), NOW), capsys).count(
        "scheduled backups are off") == 1


def test_ages(tmp_path: Path) -> None:
    assert cli_status._ago(59) == "0 min ago"
    assert cli_status._ago(3 * 3600 + 60) == "3 h 1 min ago"
    assert cli_status._ago(3 * 86400 + 7200) == "3 days 2 h ago"


def test_an_unreadable_health_state_is_said_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    health_path(tmp_path).mkdir(parents=True)  # reading it fails as it would without permission
    status: dict[str, Any] = {"running": True}
    cli_status._add_backup_status(make_config(tmp_path), status)
    assert status["backup"]["error"].startswith(f"cannot read {health_path(tmp_path)}: ")
    assert "cannot read" in printed(status["backup"], capsys)


def test_no_section_for_a_stopped_server_that_never_backed_up(tmp_path: Path) -> None:
    status: dict[str, Any] = {"running": False}
    cli_status._add_backup_status(make_config(tmp_path), status)
    assert "backup" not in status
