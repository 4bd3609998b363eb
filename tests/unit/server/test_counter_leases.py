"""Per-account counters reserved in blocks: unique positions across processes, few store writes,
and exact limits near the end of a window's allowance."""

from __future__ import annotations

import asyncio

from hardmail.server.counter_leases import BLOCK, CounterLeases, block_size
from support.memory_access import MemoryAccessStore


class CountingStore(MemoryAccessStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def add_to_counter(self, key: str, window_start: int, amount: int) -> int:
        self.writes += 1
        return await super().add_to_counter(key, window_start, amount)


async def test_positions_come_from_one_write_per_block() -> None:
    store = CountingStore()
    leases = CounterLeases(store)
    positions = [await leases.take("messages:a@example.org:h", 3600, 1_000_000) for _ in range(2 * BLOCK + 1)]
    assert positions == list(range(2 * BLOCK + 1))
    assert store.writes == 3


async def test_two_processes_never_share_a_position() -> None:
    store = CountingStore()
    first, second = CounterLeases(store), CounterLeases(store)
    taken = await asyncio.gather(*(leases.take("k", 0, 1_000_000) for leases in [first, second] * 40))
    assert len(set(taken)) == len(taken) == 80


async def test_near_the_limit_one_position_is_reserved_at_a_time() -> None:
    store = CountingStore()
    first, second = CounterLeases(store), CounterLeases(store)
    limit = BLOCK + 3
    allowed = 0
    for leases in [first, second] * limit:
        allowed += await leases.take("k", 0, limit) < limit
    assert allowed <= limit  # never more than the limit, over both processes
    assert allowed >= limit - BLOCK  # and at most one block lost to the other process


async def test_a_single_process_is_exact() -> None:
    leases = CounterLeases(CountingStore())
    positions = [await leases.take("k", 0, 5) for _ in range(7)]
    assert sum(position < 5 for position in positions) == 5


async def test_each_window_counts_from_zero() -> None:
    leases = CounterLeases(CountingStore())
    assert await leases.take("k", 0, 100) == 0
    assert await leases.take("k", 3600, 100) == 0


def test_block_size_shrinks_near_the_limit() -> None:
    assert block_size(0, 100) == BLOCK
    assert block_size(100 - BLOCK, 100) == BLOCK
    assert block_size(100 - BLOCK + 1, 100) == 1
    assert block_size(500, 100) == 1
