"""Each server process keeps its status file (:mod:`hardmail.ops.runstate`) up to date for
``hardmail status``: at start, every few seconds, and removed at a clean stop.

The file says which process it is (and which supervisor it belongs to), the addresses it listens
on, its open sessions, the outbound queue's size (from the process that runs the queue) and its
last error-level events. A failed write (a full disk) is logged once and retried next time; it
never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardmail.ops.log import log_event, recent_errors, utc_timestamp
from hardmail.ops.runstate import remove_status, write_status
from hardmail.server.listener import Listeners
from hardmail.store.ports_queue import QueueStore

STATUS_INTERVAL = 5.0  # seconds between two writes of the status file


@dataclass
class StatusKeeper:
    data_dir: Path
    worker: int | None  # None: the only process of the server
    listeners: Listeners
    queue: QueueStore | None  # set in the process that runs the outbound queue
    interval: float = STATUS_INTERVAL
    clock: Callable[[], float] = time.time
    _task: asyncio.Task[None] | None = None
    _failing: bool = False
    _started: float = field(default_factory=time.time)

    @property
    def index(self) -> int:
        return self.worker or 0

    async def snapshot(self) -> dict[str, Any]:
        queue_size = None
        if self.queue is not None:
            with contextlib.suppress(Exception):  # a busy or full database: report it as unknown
                queue_size = await self.queue.count_queued()
        now = self.clock()
        return {
            "pid": os.getpid(),
            "server_pid": os.getppid() if self.worker is not None else os.getpid(),
            "worker": self.index,
            "started": utc_timestamp(self._started),
            "updated": utc_timestamp(now),
            "updated_at": now,
            "listeners": [{"kind": b.kind, "address": str(b)} for b in self.listeners.bound],
            "sessions": len(self.listeners.sessions),
            "queue_size": queue_size,
            "errors": recent_errors(),
        }

    async def write_once(self) -> None:
        status = await self.snapshot()
        try:
            await asyncio.to_thread(write_status, self.data_dir, self.index, status)
        except OSError as exc:
            if not self._failing:
                log_event("server.status_write_failed", level="warning", error=exc.strerror or str(exc),
                          hint="hardmail status shows old information until the file can be written")
            self._failing = True
            return
        self._failing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.write_once()
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.to_thread(remove_status, self.data_dir, self.index)
