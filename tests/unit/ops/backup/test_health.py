"""The backup health state: what one attempt records, the file's modes, and reading it back."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hardmail.ops.backup.health import BackupHealth, health_path, read_health, record_attempt

T0 = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def test_no_attempt_reads_as_none(tmp_path: Path) -> None:
    assert read_health(tmp_path) is None


def test_a_good_backup_sets_last_good_and_full(tmp_path: Path) -> None:
    health = record_attempt(tmp_path, ok=True, verified=True, archive="hardmail-a-full", full=True, at=T0)
    assert health.last_good_backup_at == T0
    assert health.last_full_at == T0
    assert health.last_result == "ok"
    assert health.last_archive == "hardmail-a-full"
    assert read_health(tmp_path) == health


def test_the_file_is_private_in_a_private_directory(tmp_path: Path) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="a", at=T0)
    path = health_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_an_existing_loose_state_directory_is_made_private(tmp_path: Path) -> None:
    (tmp_path / "backup-state").mkdir(mode=0o755)
    (tmp_path / "backup-state").chmod(0o755)
    record_attempt(tmp_path, ok=False, verified=False, archive=None, error="disk full", at=T0)
    assert stat.S_IMODE((tmp_path / "backup-state").stat().st_mode) == 0o700


def test_an_unverified_archive_is_not_a_good_backup(tmp_path: Path) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="a", full=True, at=T0)
    later = T0 + timedelta(days=1)
    health = record_attempt(tmp_path, ok=True, verified=False, archive="b", error="verify: 1 file differs",
                            full=True, at=later)
    assert health.last_result == "unverified"
    assert health.last_good_backup_at == T0
    assert health.last_full_at == T0
    assert health.last_archive == "b"
    assert health.last_error == "verify: 1 file differs"
    assert health.last_failure_at == later
    assert health.consecutive_failures == 1


def test_a_failure_keeps_the_last_good_one_and_its_archive(tmp_path: Path) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="a", at=T0)
    later = T0 + timedelta(hours=1)
    health = record_attempt(tmp_path, ok=False, verified=False, archive=None, error="no space\nleft", at=later)
    assert health.last_result == "failed"
    assert health.last_good_backup_at == T0
    assert health.last_archive == "a"
    assert health.last_error == "no space left"
    assert health.last_attempt_at == later


def test_a_failure_without_text_still_says_it_failed(tmp_path: Path) -> None:
    health = record_attempt(tmp_path, ok=False, verified=False, archive=None, at=T0)
    assert health.last_error


def test_a_success_after_failures_resets_the_count_but_keeps_the_last_error(tmp_path: Path) -> None:
    for hour in range(3):
        record_attempt(tmp_path, ok=False, verified=False, archive=None, error="x", at=T0 + timedelta(hours=hour))
    assert (read_health(tmp_path) or BackupHealth()).consecutive_failures == 3
    health = record_attempt(tmp_path, ok=True, verified=True, archive="c", at=T0 + timedelta(hours=5))
    assert health.consecutive_failures == 0
    assert health.last_error == "x"
    assert health.last_failure_at == T0 + timedelta(hours=2)


def test_times_are_iso_utc_in_the_file(tmp_path: Path) -> None:
    local = datetime(2026, 3, 1, 4, 0, tzinfo=UTC).astimezone()
    record_attempt(tmp_path, ok=True, verified=True, archive="a", at=local)
    value = json.loads(health_path(tmp_path).read_text())
    assert value["last_good_backup_at"] == "2026-03-01T04:00:00+00:00"
    assert value["last_result"] == "ok"


def test_a_damaged_file_reads_as_none_and_is_rewritten(tmp_path: Path) -> None:
    record_attempt(tmp_path, ok=True, verified=True, archive="a", at=T0)
    health_path(tmp_path).write_text("{not json")
    assert read_health(tmp_path) is None
    health = record_attempt(tmp_path, ok=True, verified=True, archive="b", at=T0)
    assert read_health(tmp_path) == health


def test_age_of_the_good_backup() -> None:
    health = BackupHealth(last_good_backup_at=T0)
    assert health.good_backup_age(T0 + timedelta(hours=2)) == 7200
    assert BackupHealth().good_backup_age(T0) is None
