"""A smoke run of bench/backup.py at a tiny size, so that it does not rot (no timing is judged):
every measurement is made and both restores hold every message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli_process import cli_env, hardmail_command

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _has_backup_create() -> bool:
    done = subprocess.run(hardmail_command("backup", "--help"), capture_output=True, text=True, timeout=120,
                          env={**cli_env(), "COLUMNS": "200"}, check=False)
    return " create " in done.stdout and " restore " in done.stdout


@pytest.mark.skipif(not _has_backup_create(), reason="hardmail backup create/restore are not in this checkout yet")
def test_backup_bench_measures_hardmail_and_tar_and_restores_every_message(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / "backup.py"), "--messages", "60", "--new", "5", "--rounds",
                           "1", "--cache", str(tmp_path / "cache"), "--work", str(tmp_path), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "backup.json").read_text())
    (run,) = result["runs"]
    measured = {"hardmail full", "tar full", "hardmail restore", "tar restore", "hardmail incremental"}
    assert measured <= set(run["seconds"])
    assert run["restored"]["hardmail"] == run["restored"]["tar"] == run["source"] and run["source"][0] == 60
    assert "full within 1.5x of tar" in (tmp_path / "out" / "backup.md").read_text()
