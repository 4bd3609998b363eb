"""The scheduled run: full or incremental, retention's deletions on disk, one run at a time, and
failures recorded. The runs that make real archives need the backup core (create, catalog) and
are skipped until it is there."""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hardmail.config.schema import Config
from hardmail.ops.backup.health import read_health
from hardmail.ops.backup.scheduled import (
    ScheduledOutcome,
    choose_kind,
    destination_of,
    prune,
    run_scheduled_backup,
)
from support.log_events import events

NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)


def rec(name: str, at: datetime, kind: str = "full", chain: tuple[str, ...] = (), ok: bool | None = True,
        parent: str | None = None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "parent": parent, "chain": [*chain, name], "created_at": at.isoformat(),
            "archive_file": f"{name}.tar.zst", "verify": None if ok is None else {"ok": ok, "failures": []}}


def make_config(tmp_path: Path, **backup: object) -> Config:
    return Config.model_validate({"server": {"data_dir": str(tmp_path / "data")}, "backup": backup})


# --- full or incremental -------------------------------------------------------------------------

def test_the_first_is_full() -> None:
    assert choose_kind([], NOW, 7) == "full"


def test_incremental_until_the_full_is_old_enough() -> None:
    full = rec("f", NOW - timedelta(days=6, hours=2))  # 4 March, 01:00: six local days ago
    incr = rec("i", NOW - timedelta(days=1), "incremental", ("f",), parent="f")
    assert choose_kind([full, incr], NOW, 7) == "incremental"
    assert choose_kind([rec("f", NOW - timedelta(days=7))], NOW, 7) == "full"


def test_days_are_local_dates_so_a_few_minutes_do_not_matter() -> None:
    # the full was made a few seconds after 03:00 a week ago; the run is at 03:00 sharp
    full = rec("f", NOW - timedelta(days=7) + timedelta(seconds=20))
    assert choose_kind([full], NOW, 7) == "full"
    berlin = ZoneInfo("Europe/Berlin")
    late = rec("f", datetime(2026, 3, 2, 23, 30, tzinfo=UTC))  # 3 March 00:30 in Berlin
    assert choose_kind([late], datetime(2026, 3, 9, 22, 0, tzinfo=UTC).astimezone(berlin), 7) == "incremental"
    assert choose_kind([late], datetime(2026, 3, 9, 22, 0, tzinfo=UTC), 7) == "full"


def test_zero_days_means_always_full() -> None:
    assert choose_kind([rec("f", NOW - timedelta(hours=1))], NOW, 0) == "full"


def test_nothing_is_built_on_an_archive_that_failed_verification() -> None:
    records = [rec("f", NOW - timedelta(days=1)), rec("i", NOW - timedelta(hours=5), "incremental", ("f",), ok=False)]
    assert choose_kind(records, NOW, 7) == "full"


def test_an_unverified_archive_may_be_built_on() -> None:
    assert choose_kind([rec("f", NOW - timedelta(days=1), ok=None)], NOW, 7) == "incremental"


def test_a_broken_chain_makes_a_full() -> None:
    incr = rec("i", NOW - timedelta(days=1), "incremental", ("gone",), parent="gone")
    assert choose_kind([incr], NOW, 7) == "full"


# --- retention on disk ---------------------------------------------------------------------------

def archive_files(config: Config, records: list[dict[str, Any]]) -> Path:
    destination = destination_of(config)
    manifests = config.data_dir / "backup-state" / "manifests"
    manifests.mkdir(parents=True)
    destination.mkdir(parents=True)
    for record in records:
        (destination / record["archive_file"]).write_bytes(b"archive")
        (destination / f"{record['name']}.json").write_text(json.dumps(record))
        (manifests / f"{record['name']}.json").write_text("{}")
    (destination / "notes.txt").write_text("not an archive")
    return destination


def test_prune_deletes_archive_sidecar_and_manifest_copy(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, keep_daily=2, keep_weekly=0, keep_monthly=0)
    records = [rec(f"d{i}", NOW - timedelta(days=5 - i)) for i in range(5)]
    destination = archive_files(config, records)
    deleted = prune(config, destination, NOW, records)
    assert deleted == ["d2", "d1", "d0"]  # newest first
    names = sorted(p.name for p in destination.iterdir())
    assert names == ["d3.json", "d3.tar.zst", "d4.json", "d4.tar.zst", "notes.txt"]
    assert sorted(p.name for p in (config.data_dir / "backup-state" / "manifests").iterdir()) == ["d3.json", "d4.json"]
    [pruned] = events(caplog, "backup.pruned")
    assert (pruned["archives"], pruned["count"], pruned["kept"]) == (["d2", "d1", "d0"], 3, 2)


def test_prune_keeps_chains_and_finishes_a_half_done_deletion(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path, keep_daily=1, keep_weekly=0, keep_monthly=0)
    records = [rec("old", NOW - timedelta(days=9)), rec("f", NOW - timedelta(days=2)),
               rec("i", NOW - timedelta(days=1), "incremental", ("f",), parent="f")]
    destination = archive_files(config, records)
    (destination / "old.tar.zst").unlink()  # an earlier prune stopped after the archive file
    assert prune(config, destination, NOW, records) == ["old"]
    assert not (destination / "old.json").exists()
    assert (destination / "f.tar.zst").exists() and (destination / "i.tar.zst").exists()
    assert prune(config, destination, NOW, records[1:]) == []
    assert len(events(caplog, "backup.pruned")) == 1  # nothing deleted: nothing logged


def test_prune_never_leaves_the_destination(tmp_path: Path) -> None:
    config = make_config(tmp_path, keep_daily=1, keep_weekly=0, keep_monthly=0)
    outside = tmp_path / "precious.tar.zst"
    outside.write_bytes(b"x")
    records = [{**rec("a", NOW - timedelta(days=3)), "archive_file": "../../precious.tar.zst"},
               rec("b", NOW - timedelta(days=1))]
    destination = archive_files(config, records[1:])
    assert prune(config, destination, NOW, records) == ["a"]
    assert outside.exists()


# --- the run ------------------------------------------------------------------------------------

async def test_a_run_while_another_backup_runs_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(tmp_path)
    state = config.data_dir / "backup-state"
    state.mkdir(parents=True)
    fd = os.open(state / "run.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        outcome = await run_scheduled_backup(config, NOW)
    finally:
        os.close(fd)
    assert (outcome.result, outcome.exit_code(True)) == ("skipped", 75)
    assert events(caplog, "backup.skipped")[0]["level"] == "warning"
    assert read_health(config.data_dir) is None  # nothing was attempted


async def test_a_failure_is_an_error_event_and_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a-file").write_text("")
    config = make_config(tmp_path, destination=str(tmp_path / "a-file" / "backups"))
    outcome = await run_scheduled_backup(config, NOW)
    assert (outcome.result, outcome.exit_code(True), outcome.archive) == ("failed", 1, None)
    assert "NotADirectoryError" in outcome.error
    [failed] = events(caplog, "backup.failed")
    assert (failed["level"], failed["reason"]) == ("error", "scheduled")
    state = read_health(config.data_dir)
    assert state is not None and (state.last_result, state.last_good_backup_at) == ("failed", None)
    assert state.last_error == outcome.error


def test_outcome_json_round_trip_and_exit_codes() -> None:
    outcome = ScheduledOutcome("unverified", NOW.isoformat(), 1.5, "full", "a", "", ("x",))
    assert ScheduledOutcome.from_json(json.loads(json.dumps(outcome.to_json()))) == outcome
    assert outcome.exit_code(verify_wanted=False) == 0
    assert outcome.exit_code(verify_wanted=True) == 1
    assert ScheduledOutcome("ok", "", 0).exit_code(True) == 0


# --- with the backup core ------------------------------------------------------------------------

def _initialised(tmp_path: Path, **backup: object) -> Config:
    pytest.importorskip("hardmail.ops.backup.create", reason="the backup core (create) is not merged yet")
    pytest.importorskip("hardmail.ops.backup.catalog", reason="the backup core (catalog) is not merged yet")
    from support.cli_process import cli_env, run_cli

    data = tmp_path / "data"
    env = cli_env(HARDMAIL_DATA_DIR=str(data))
    assert run_cli("domain", "add", "example.org", cwd=tmp_path, env=env).returncode == 0
    return make_config(tmp_path, **backup)


async def test_full_then_incremental_verified_and_healthy(tmp_path: Path) -> None:
    config = _initialised(tmp_path)
    first = await run_scheduled_backup(config, datetime.now(UTC))
    assert (first.result, first.kind) == ("ok", "full"), first.error
    second = await run_scheduled_backup(config, datetime.now(UTC))
    assert (second.result, second.kind) == ("ok", "incremental"), second.error
    state = read_health(config.data_dir)
    assert state is not None and state.last_result == "ok" and state.last_archive == second.archive
    assert state.last_good_backup_at is not None and state.last_full_at is not None


async def test_retention_deletes_the_older_full_of_the_day(tmp_path: Path) -> None:
    config = _initialised(tmp_path, full_every_days=0, keep_daily=1, keep_weekly=0, keep_monthly=0)
    first = await run_scheduled_backup(config, datetime.now(UTC))
    second = await run_scheduled_backup(config, datetime.now(UTC))
    assert second.result == "ok" and second.pruned == (first.archive,)
    from hardmail.ops.backup.catalog import read_records

    assert [r.name for r in read_records(destination_of(config))] == [second.archive]
