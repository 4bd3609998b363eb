"""SQLite write transactions of one process take turns, first come first served.

SQLite lets one writer at a time hold the database; a writer that finds it taken polls in its busy
handler (short sleeps, up to ``busy_timeout``). That is not a queue: with many sessions writing at
once (a counter per new connection), a late writer can win every poll and an early one can wait
past ``busy_timeout`` and fail with "database is locked". Here the writers of this process wait for
their turn on an asyncio lock before ``BEGIN IMMEDIATE``, so only one of them ever polls SQLite; a
writer of another process (the CLI) still meets the busy timeout. PostgreSQL needs none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_turns: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


class TurnTakingEngine(AsyncEngine):
    """An :class:`AsyncEngine` whose ``begin()`` waits for the process-wide turn of its database.

    The wait is bounded by ``max_wait`` seconds; after that the transaction begins anyway and
    SQLite's busy timeout decides, as without turns (so a nested writer cannot hang forever).
    """

    __slots__ = ("_max_wait", "_turn")

    def __init__(self, sync_engine: Engine, turn: asyncio.Lock, max_wait: float) -> None:
        super().__init__(sync_engine)
        self._turn = turn
        self._max_wait = max_wait

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        taken = await self._take_turn()
        try:
            async with super().begin() as connection:
                yield connection
        finally:
            if taken:
                self._turn.release()

    async def _take_turn(self) -> bool:
        try:
            async with asyncio.timeout(self._max_wait):
                await self._turn.acquire()
        except TimeoutError:
            return False
        return True


def taking_turns(engine: AsyncEngine, options: dict[str, object], max_wait: float) -> AsyncEngine:
    """``engine`` with ``options``, its ``begin()`` taking turns with every other writer built on
    the same engine in this process."""
    turn = _turns.setdefault(engine.sync_engine, asyncio.Lock())
    return TurnTakingEngine(engine.sync_engine.execution_options(**options), turn, max_wait)
