"""A scheduler's ``sleep`` driven by the test (the backup and audit schedulers' tests): each nap
waits until the test ends it, and the fake clock moves by the nap's length."""

from __future__ import annotations

import asyncio

from hardmail.core.clock import FakeClock


class DrivenSleep:
    """The scheduler's ``sleep``: each nap waits until the test lets it end (and moves the clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.naps: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self.slept = 0.0

    async def sleep(self, seconds: float) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self.naps.put((seconds, done))
        await done

    async def nap(self) -> float:
        """Wait for the scheduler's next nap, let the clock pass it, end it; returns its length."""
        seconds, done = await asyncio.wait_for(self.naps.get(), 30)
        self.clock.advance(seconds)
        self.slept += seconds
        done.set_result(None)
        return seconds
