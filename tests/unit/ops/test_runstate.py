"""The data directory's server lock and the status files ``hardmail status`` reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hardmail.ops.runstate import (
    AnotherServerRunning,
    ServerLock,
    lock_holder,
    read_statuses,
    remove_status,
    write_status,
)


def test_one_holder_at_a_time_and_it_says_who_it_is(tmp_path: Path) -> None:
    assert lock_holder(tmp_path) is None
    lock = ServerLock.acquire(tmp_path, {"workers": 2})
    try:
        holder = lock_holder(tmp_path)
        assert holder is not None
        assert (holder["pid"], holder["workers"], holder["data_dir"]) == (os.getpid(), 2, str(tmp_path))
        with pytest.raises(AnotherServerRunning) as refused:
            ServerLock.acquire(tmp_path, {})  # another open file description: flock refuses it
        assert str(refused.value) == (f"another hardmail server (pid {os.getpid()}, started {holder['started']}) "
                                      f"is using {tmp_path}")
    finally:
        lock.release()
    assert lock_holder(tmp_path) is None
    assert (tmp_path / "hardmail.lock").stat().st_mode & 0o777 == 0o600
    ServerLock.acquire(tmp_path, {}).release()  # free again


def test_status_files_of_another_server_are_ignored(tmp_path: Path) -> None:
    write_status(tmp_path, 1, {"server_pid": 10, "worker": 1})
    write_status(tmp_path, 0, {"server_pid": 10, "worker": 0})
    write_status(tmp_path, 2, {"server_pid": 9, "worker": 2})  # left by an earlier server
    assert [s["worker"] for s in read_statuses(tmp_path, 10)] == [0, 1]
    remove_status(tmp_path, 0)
    assert [s["worker"] for s in read_statuses(tmp_path, 10)] == [1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["worker-1.json", "worker-2.json"]
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o700
