"""A server process's status file: written at once, with its listeners, queue size and last errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hardmail.ops.log import log_event
from hardmail.ops.runstate import read_statuses
from hardmail.server.listener import BoundAddress, Listeners
from hardmail.server.status_keeper import StatusKeeper


class _Queue:
    async def count_queued(self) -> int:
        return 3


def _listeners() -> Listeners:
    listeners = Listeners(ctx=None)  # type: ignore[arg-type]  # only .bound and .sessions are read
    listeners.bound.append(BoundAddress("smtp", "127.0.0.1", 2525))
    return listeners


async def test_the_status_file_says_what_status_shows(tmp_path: Path) -> None:
    log_event("test.broken_thing", level="error", detail="what went wrong")
    keeper = StatusKeeper(tmp_path, None, _listeners(), _Queue(), clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]
    await keeper.write_once()
    [status] = read_statuses(tmp_path, os.getpid())
    assert (status["pid"], status["worker"], status["queue_size"], status["sessions"]) == (os.getpid(), 0, 3, 0)
    assert status["listeners"] == [{"kind": "smtp", "address": "127.0.0.1:2525"}]
    assert status["updated"] == "2027-01-15T08:00:00.000Z"
    last: dict[str, Any] = status["errors"][-1]
    assert (last["event"], last["detail"], last["level"]) == ("test.broken_thing", "what went wrong", "error")
    await keeper.stop()
    assert read_statuses(tmp_path, os.getpid()) == []


async def test_a_failed_write_does_not_stop_the_server(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data directory should be")
    keeper = StatusKeeper(blocked, 1, _listeners(), None)
    await keeper.write_once()  # logged as a warning, not raised
    await keeper.write_once()
