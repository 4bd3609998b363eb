"""Per-source log rate limit: a client cannot fill the disk through the log by repeating a command.

The lines of one event (``smtp.helo``, ``smtp.reject``, ``smtp.auth``...) from one source (an IPv4
address or an IPv6 /64, as bans count them) are written up to ``burst`` times per ``interval``
seconds; further ones are only counted. A source's subnet (IPv4 /24, IPv6 /48) has a budget of its
own, ``subnet_burst`` lines of one event per interval over all its sources, so that many
addresses of one network (a /24 of attackers) cannot multiply the volume by 256. Once an interval
is over, one summary (event, source or subnet, count, highest level) is handed back to the
logger, with the next line logged from any source or by a timer (``write_when_ended``), and
the logger writes it as a ``log.suppressed`` event. Each (event, source) and (event, subnet) has
its own fixed window that opens with its first line.

Memory is bounded: at most ``max_keys`` windows are kept, the oldest goes first (after its
summary). Windows are kept in the order they opened, so expired ones are found from the front
without a scan. Hand-written because what is needed besides the counting (hand back the count of
what was dropped, per key, when its window ends) is not what rate-limiting libraries offer, and it
is a few dozen lines; the clock is injected for tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 50_000
_Key = tuple[str, str, bool]  # event, source or subnet, whether it is a subnet


@dataclass(slots=True)
class _Window:
    start: float
    written: int = 0
    suppressed: int = 0
    level: int = 0  # highest level of the suppressed lines


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Lines of ``event`` from ``source`` that were counted instead of written."""

    event: str
    source: str
    count: int
    level: int
    seconds: float  # length of the window they fell in
    subnet: bool = False  # ``source`` is a subnet: the lines of all its sources past its budget


NOTHING: tuple[Suppressed, ...] = ()


class SourceLimiter:
    """Admits at most ``burst`` lines per (event, source) and ``subnet_burst`` per (event, subnet)
    per ``interval`` seconds (``subnet_burst`` 0: no subnet budget)."""

    def __init__(self, burst: int, interval: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS, subnet_burst: int = 0) -> None:
        self.burst = burst
        self.subnet_burst = subnet_burst
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[_Key, _Window] = {}  # in the order the windows opened
        self._counting = 0  # windows with suppressed lines (a summary to write)
        self._lock = threading.Lock()  # lines may come from threads besides the event loop
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}  # at most one per loop
        self._generation = 0  # bumped by pending(): a timer armed before it has nothing to do

    def admit(self, event: str, source: str, level: int,
              subnet: str | None = None) -> tuple[bool, tuple[Suppressed, ...]]:
        """Whether this line is written, and the summaries of windows that ended meanwhile."""
        with self._lock:
            now = self._clock()
            ended = self._expired(now)
            window = self._window((event, source, False), now, ended)
            if window.written >= self.burst:
                self._suppress(window, level)
                return False, tuple(ended)
            if subnet is not None and self.subnet_burst > 0:
                shared = self._window((event, subnet, True), now, ended)
                if shared.written >= self.subnet_burst:
                    self._suppress(shared, level)
                    return False, tuple(ended)
                shared.written += 1
            window.written += 1
            return True, tuple(ended) if ended else NOTHING

    def counting(self) -> bool:
        """Whether some window holds suppressed lines whose summary is still to be written."""
        return self._counting > 0

    def take_ended(self) -> list[Suppressed]:
        """The summaries of the windows that ended by now (for a timer: no other line may come)."""
        with self._lock:
            return self._expired(self._clock())

    def write_when_ended(self, write: Callable[[Suppressed], None]) -> None:
        """Have ``write`` called with the summaries when their interval ends even if no other line
        comes: one timer per event loop, due an interval after the first line it was armed for.
        Outside a running loop, the next line or the exit brings them."""
        loop = asyncio.events._get_running_loop()
        if loop is None or loop in self._timers:
            return
        self._timers[loop] = loop.call_later(self.interval, self._due, loop, write, self._generation)

    def _due(self, loop: asyncio.AbstractEventLoop, write: Callable[[Suppressed], None], generation: int) -> None:
        self._timers.pop(loop, None)
        if generation != self._generation:  # pending() took everything meanwhile (stop, fork)
            return
        for summary in self.take_ended():
            write(summary)
        if self.counting():
            self.write_when_ended(write)

    def pending(self) -> list[Suppressed]:
        """Summaries of every window with suppressed lines, ended or not (at exit); they restart."""
        with self._lock:
            now = self._clock()
            found = [self._summary(key, window, now) for key, window in self._windows.items() if window.suppressed]
            self._windows.clear()
            self._counting = 0
            # Timers are forgotten, not cancelled: this may run in another thread than their loop
            # (uvloop's handles are not thread-safe) or after it closed; one that fires stops.
            self._timers.clear()
            self._generation += 1
            return found

    def _suppress(self, window: _Window, level: int) -> None:
        if not window.suppressed:
            self._counting += 1
        window.suppressed += 1
        window.level = max(window.level, level)

    def _expired(self, now: float) -> list[Suppressed]:
        ended: list[Suppressed] = []
        windows = self._windows
        while windows:
            key, window = next(iter(windows.items()))
            if now - window.start < self.interval:
                break
            self._drop(key, now, ended)
        return ended

    def _window(self, key: _Key, now: float, ended: list[Suppressed]) -> _Window:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._max_keys:
                self._drop(next(iter(self._windows)), now, ended)
            window = self._windows[key] = _Window(now)
        return window

    def _drop(self, key: _Key, now: float, ended: list[Suppressed]) -> None:
        window = self._windows.pop(key)
        if window.suppressed:
            self._counting -= 1
            ended.append(self._summary(key, window, now))

    @staticmethod
    def _summary(key: _Key, window: _Window, now: float) -> Suppressed:
        return Suppressed(key[0], key[1], window.suppressed, window.level, now - window.start, key[2])
