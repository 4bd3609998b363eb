"""The time limit of a session's waits for its client: one lazily re-armed timer per session."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from hardmail.server.channel import Channel


class Watchdog:
    """The time limit of a session's waits for its client, without a timer per wait.

    A wait only records its deadline; one timer per session fires at the earliest deadline it was
    armed for and, when the session is still waiting past its current deadline, interrupts the
    channel with TimeoutError. (``asyncio.timeout`` around every read would schedule and cancel a
    timer per command.)
    """

    __slots__ = ("_deadline", "_timer", "_timer_at", "_waiting", "channel")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._deadline = 0.0  # time.monotonic() at which the current wait ends
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._waiting = False

    @contextlib.contextmanager
    def waiting(self, seconds: float) -> Iterator[None]:
        """Around one wait for the client: raise TimeoutError in it after ``seconds``."""
        now = time.monotonic()
        self._deadline = now + seconds
        if self._timer is None or self._timer_at > self._deadline:
            self._schedule(now)
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, now: float) -> None:
        self.stop()
        self._timer_at = self._deadline
        self._timer = asyncio.get_running_loop().call_later(max(0.0, self._deadline - now), self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self._waiting:
            return  # between waits: the next wait arms the timer again
        now = time.monotonic()
        if now < self._deadline:
            self._schedule(now)
        else:
            self.channel.interrupt(TimeoutError())
