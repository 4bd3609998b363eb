"""A full disk, for real (issue 11, 13, the command-line half): ``domain add``, ``account add`` and
``serve`` on a data directory whose file system is full print one line saying so, never a traceback.

The data directory is on a tiny tmpfs mounted for the test (root only; skipped otherwise) and
filled to the last block; the teardown unmounts it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_process import EPHEMERAL_LISTENERS, cli_env, run_cli
from support.small_disk import small_tmpfs

PASSWORD = "a long enough passphrase for the test\n"
CHEAP_ARGON2 = "[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n"


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with small_tmpfs("4m", prefix="hardmail-full-") as mount_point:
        yield mount_point


def _fill(disk: Path, leave: int = 0) -> None:
    """Write until the file system has no block left, then give back ``leave`` bytes."""
    filler = disk / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    assert os.statvfs(disk).f_bavail == 0
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)


def _disk_full(result: subprocess.CompletedProcess[str], data: Path) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith(("{", "created data directory "))]
    assert lines == [f"error: the disk holding {data} is full; free space and retry"], result.stderr
    assert "Traceback" not in result.stderr and "sqlalchemy" not in result.stderr.lower()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hardmail.toml"  # off the small disk: only the data directory is on it
    path.write_text(CHEAP_ARGON2)
    return path


def test_domain_add_and_account_add_on_a_full_disk(small_disk: Path, config: Path) -> None:
    data = small_disk / "data"
    common = ("-d", str(data), "-c", str(config))
    assert run_cli("domain", "add", "example.org", *common, cwd=small_disk).returncode == 0
    _fill(small_disk)
    _disk_full(run_cli("domain", "add", "example.net", *common, cwd=small_disk), data)
    _disk_full(run_cli("account", "add", "alice@example.org", "--password-stdin", *common, cwd=small_disk,
                       stdin=PASSWORD), data)


@pytest.mark.parametrize(("initialised", "left"), [(True, 0), (False, 0), (False, 16384)],
                         ids=["initialised", "empty", "room-for-the-lock-only"])
def test_serve_on_a_full_disk(small_disk: Path, config: Path, initialised: bool, left: int) -> None:
    data = small_disk / "data"
    common = ("-d", str(data), "-c", str(config))
    if initialised:
        assert run_cli("domain", "add", "example.org", *common, cwd=small_disk).returncode == 0
    _fill(small_disk, left)
    result = run_cli("serve", *EPHEMERAL_LISTENERS, *common, cwd=small_disk,
                     env=cli_env(HARDMAIL_SERVER__WORKERS="1"))
    _disk_full(result, data)
    assert "hardmail is running" not in result.stdout
