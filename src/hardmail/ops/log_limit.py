"""Per-source log rate limit: a client cannot fill the disk through the log by repeating a command.

The lines of one event (``smtp.helo``, ``smtp.reject``, ``smtp.auth``...) from one source (an IPv4
address or an IPv6 /64, as bans count them) are written up to ``burst`` times per ``interval``
seconds; further ones are only counted. Once that interval is over, one summary (event, source,
count, highest level) is handed back to the logger, at the next line logged from any source, and
the logger writes it as a ``log.suppressed`` event. Each (event, source) has its own fixed window
that opens with its first line.

Memory is bounded: at most ``max_keys`` windows are kept, the oldest goes first (after its
summary). Windows are kept in the order they opened, so expired ones are found from the front
without a scan. Hand-written because what is needed besides the counting (hand back the count of
what was dropped, per key, when its window ends) is not what rate-limiting libraries offer, and it
is a few dozen lines; the clock is injected for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_KEYS = 50_000


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


NOTHING: tuple[Suppressed, ...] = ()


class SourceLimiter:
    """Admits at most ``burst`` lines per (event, source) per ``interval`` seconds."""

    def __init__(self, burst: int, interval: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[tuple[str, str], _Window] = {}  # in the order the windows opened
        self._lock = threading.Lock()  # lines may come from threads besides the event loop

    def admit(self, event: str, source: str, level: int) -> tuple[bool, tuple[Suppressed, ...]]:
        """Whether this line is written, and the summaries of windows that ended meanwhile."""
        with self._lock:
            now = self._clock()
            ended = self._expired(now)
            key = (event, source)
            window = self._windows.get(key)
            if window is None:
                window = self._open(key, now, ended)
            if window.written < self.burst:
                window.written += 1
                admitted = True
            else:
                window.suppressed += 1
                window.level = max(window.level, level)
                admitted = False
            return admitted, tuple(ended) if ended else NOTHING

    def pending(self) -> list[Suppressed]:
        """Summaries of every window with suppressed lines, ended or not (at exit); they restart."""
        with self._lock:
            now = self._clock()
            found = [self._summary(key, window, now) for key, window in self._windows.items() if window.suppressed]
            self._windows.clear()
            return found

    def _expired(self, now: float) -> list[Suppressed]:
        ended: list[Suppressed] = []
        windows = self._windows
        while windows:
            key, window = next(iter(windows.items()))
            if now - window.start < self.interval:
                break
            del windows[key]
            if window.suppressed:
                ended.append(self._summary(key, window, now))
        return ended

    def _open(self, key: tuple[str, str], now: float, ended: list[Suppressed]) -> _Window:
        if len(self._windows) >= self._max_keys:
            oldest_key = next(iter(self._windows))
            oldest = self._windows.pop(oldest_key)
            if oldest.suppressed:
                ended.append(self._summary(oldest_key, oldest, now))
        window = self._windows[key] = _Window(now)
        return window

    @staticmethod
    def _summary(key: tuple[str, str], window: _Window, now: float) -> Suppressed:
        return Suppressed(key[0], key[1], window.suppressed, window.level, now - window.start)
