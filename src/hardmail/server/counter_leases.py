"""Per-account message and recipient counters, counted in the database a block at a time.

Each message and each recipient of an authenticated account takes the next *position* in its
hour and day windows; the rate-limit verdict judges that position (the count before it). Taking a
position from the database is a write transaction, and a submitted message needs four of them.
Instead, a process reserves a block of positions with one ``add_to_counter(key, window, block)``
and hands them out from memory until the block is used up, then reserves the next one.

Blocks come from the shared counter, so no two processes (or sessions) ever get the same
position and a limit of N never lets more than N through in a window. What a process reserved
but did not use before the window ends is lost, which can refuse an account a little early when
several worker processes share it; near the limit (less than ``BLOCK`` positions left, as last
seen) blocks are one position long, so that a single process is exact.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hardmail.store.ports_access import AccessStore

BLOCK = 16  # positions reserved with one write, while the limit is far away
MAX_LEASES = 10_000  # counters remembered at once; windows that have ended go first


@dataclass
class _Lease:
    next: int  # the next position to hand out
    end: int  # one past the last reserved position
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def block_size(seen_total: int, limit: int, block: int = BLOCK) -> int:
    """How many positions to reserve when ``seen_total`` were taken so far: a whole block while the
    limit is far, one at a time near it (and past it: a refused one still counts)."""
    return block if seen_total + block <= limit else 1


class CounterLeases:
    """Positions of (counter key, window start) pairs, reserved in blocks from ``store``."""

    def __init__(self, store: AccessStore, block: int = BLOCK) -> None:
        self.store = store
        self.block = block
        self._leases: dict[tuple[str, int], _Lease] = {}

    async def take(self, key: str, window_start: int, limit: int) -> int:
        """The position of one more message or recipient: how many were counted before it."""
        lease = self._lease(key, window_start)
        async with lease.lock:  # one reservation at a time per counter in this process
            if lease.next >= lease.end:
                size = block_size(lease.end, limit, self.block)
                total = await self.store.add_to_counter(key, window_start, size)
                lease.next, lease.end = total - size, total
            position = lease.next
            lease.next += 1
        return position

    def _lease(self, key: str, window_start: int) -> _Lease:
        lease = self._leases.get((key, window_start))
        if lease is None:
            if len(self._leases) >= MAX_LEASES:
                self._forget_oldest_windows(window_start)
            lease = self._leases[(key, window_start)] = _Lease(0, 0)
        return lease

    def _forget_oldest_windows(self, current: int) -> None:
        """Drop the leases of windows before ``current``; if none, all (their blocks are lost)."""
        stale = [k for k in self._leases if k[1] < current]
        for k in stale or list(self._leases):
            del self._leases[k]
