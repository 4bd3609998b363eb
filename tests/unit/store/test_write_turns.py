"""SQLite writers of one process take turns (hardmail.store.sql.write_turns)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.store.sql.engine import create_engine_for, for_writing
from hardmail.store.sql.write_turns import TurnTakingEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    created = create_engine_for(f"sqlite+aiosqlite:///{tmp_path / 'turns.db'}")
    try:
        yield created
    finally:
        await created.dispose()


async def test_writers_of_one_engine_share_one_turn(engine: AsyncEngine) -> None:
    first, second = for_writing(engine), for_writing(engine)
    assert isinstance(first, TurnTakingEngine) and isinstance(second, TurnTakingEngine)
    async with first.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        assert second._turn.locked()
    assert not second._turn.locked()


async def test_the_turn_is_given_back_when_the_transaction_fails(engine: AsyncEngine) -> None:
    writer = for_writing(engine)
    assert isinstance(writer, TurnTakingEngine)
    with pytest.raises(Exception, match="no such table"):
        async with writer.begin() as conn:
            await conn.execute(text("INSERT INTO missing VALUES (1)"))
    assert not writer._turn.locked()


async def test_a_writer_that_waited_too_long_begins_anyway(engine: AsyncEngine) -> None:
    turn = asyncio.Lock()
    await turn.acquire()  # held by someone else, e.g. an outer transaction of the same task
    writer = TurnTakingEngine(engine.sync_engine, turn, max_wait=0)
    async with writer.begin() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    assert turn.locked()  # not released by the writer that did not take it


async def test_a_waiting_writer_gets_the_turn_when_it_is_free(engine: AsyncEngine) -> None:
    turn = asyncio.Lock()
    await turn.acquire()
    writer = TurnTakingEngine(engine.sync_engine, turn, max_wait=60)
    entered = asyncio.Event()

    async def write() -> None:
        async with writer.begin():
            entered.set()

    task = asyncio.create_task(write())
    turn.release()
    await task
    assert entered.is_set() and not turn.locked()


def test_postgresql_writers_do_not_take_turns() -> None:
    engine = create_engine_for("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert not isinstance(for_writing(engine), TurnTakingEngine)
