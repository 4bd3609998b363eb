"""HashPool: work runs in threads, the queue is bounded, saturation is refused."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hardmail.auth.hashing import VerifyResult, verify_password
from hardmail.auth.pool import HashPool, Lane, PoolSaturated
from hardmail.config.schema import PasswordHashSection

WAIT = 10.0  # upper bound for a thread handshake; never reached when the code is right


class BlockingHashing:
    """A fake hasher whose jobs start, report it, and wait until the test releases them."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.threads: list[int] = []

    def _work(self) -> None:
        self.threads.append(threading.get_ident())
        self.started.release()
        assert self.release.wait(WAIT)

    def hash(self, password: str) -> str:
        self._work()
        return f"hashed:{len(password)}"

    def verify(self, stored_hash: str, password: str) -> VerifyResult:
        self._work()
        return VerifyResult(ok=stored_hash == password)

    def dummy_verify(self) -> None:
        self._work()


async def _until_started(fake: BlockingHashing) -> None:
    assert await asyncio.to_thread(fake.started.acquire, True, WAIT)


async def _let_tasks_submit() -> None:
    # One pass of the event loop: every task created before runs up to its first await, which
    # comes after its job is submitted. This is ordering, not timing.
    await asyncio.sleep(0)


@pytest.fixture
def fake() -> BlockingHashing:
    return BlockingHashing()


async def test_work_runs_off_the_event_loop_thread(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    pool = HashPool(params, hashing=fake)
    fake.release.set()
    try:
        assert await pool.hash("pw") == "hashed:2"
        assert await pool.verify("x", "x") == VerifyResult(ok=True)
        await pool.dummy_verify()
    finally:
        pool.close()
    assert len(fake.threads) == 3
    assert threading.get_ident() not in fake.threads


async def test_saturated_pool_refuses_and_recovers(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    pool = HashPool(params, max_pending=2, hashing=fake)  # 1 worker + 2 waiting
    running = asyncio.create_task(pool.verify("a", "a"))
    await _until_started(fake)
    waiting = [asyncio.create_task(pool.verify("b", "c")) for _ in range(2)]
    await _let_tasks_submit()
    assert pool.in_flight == 3
    with pytest.raises(PoolSaturated):
        await pool.verify("d", "d")
    fake.release.set()
    results = await asyncio.gather(running, *waiting)
    assert [r.ok for r in results] == [True, False, False]
    assert await asyncio.to_thread(pool.join, WAIT)
    assert (await pool.verify("e", "e")).ok
    pool.close()


async def test_default_queue_limit_is_eight_per_worker(fake: BlockingHashing) -> None:
    params = PasswordHashSection(time_cost=1, memory_cost=8192, hash_workers=1)
    pool = HashPool(params, hashing=fake)
    tasks = [asyncio.create_task(pool.dummy_verify()) for _ in range(1 + 8)]
    await _let_tasks_submit()
    with pytest.raises(PoolSaturated):
        await pool.dummy_verify()
    fake.release.set()
    await asyncio.gather(*tasks)
    pool.close()


async def test_cancelled_caller_frees_its_place_once_the_job_ends(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    pool = HashPool(params, max_pending=0, hashing=fake)
    running = asyncio.create_task(pool.hash("pw"))
    await _until_started(fake)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert pool.in_flight == 1  # the thread still works on it, so the place stays taken
    fake.release.set()
    assert await asyncio.to_thread(pool.join, WAIT)
    assert await pool.hash("again") == "hashed:5"
    pool.close()


async def test_saturation_message_holds_no_secret(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    pool = HashPool(params, max_pending=0, hashing=fake)
    running = asyncio.create_task(pool.verify("stored-secret", "password-secret"))
    await _until_started(fake)
    with pytest.raises(PoolSaturated) as refused:
        await pool.verify("stored-secret", "password-secret")
    assert "secret" not in str(refused.value)
    fake.release.set()
    await running
    pool.close()


async def test_real_pool_hashes_and_verifies(params: PasswordHashSection) -> None:
    pool = HashPool(params)
    try:
        stored = await pool.hash("a long enough password")
        assert await pool.verify(stored, "a long enough password") == VerifyResult(True, False)
        assert not (await pool.verify(stored, "wrong")).ok
        await pool.dummy_verify()
    finally:
        pool.close()
    assert verify_password(stored, "a long enough password", params).ok


async def test_closed_pool_refuses_work(params: PasswordHashSection, fake: BlockingHashing) -> None:
    pool = HashPool(params, hashing=fake)
    pool.close()
    with pytest.raises(RuntimeError):
        await pool.hash("pw")
    assert pool.in_flight == 0


async def test_one_source_cannot_hold_more_than_its_share(params: PasswordHashSection, fake: BlockingHashing) -> None:
    pool = HashPool(params, max_pending=8, per_source=2, hashing=fake)
    attacker = Lane("192.0.2.66")
    held = [asyncio.create_task(pool.verify("a", "b", attacker)) for _ in range(2)]
    await _until_started(fake)
    with pytest.raises(PoolSaturated):  # the third of one source is refused before the pool
        await pool.verify("a", "b", attacker)
    other = asyncio.create_task(pool.verify("c", "c", Lane("198.51.100.7")))
    await _let_tasks_submit()
    assert pool.in_flight == 3
    fake.release.set()
    assert (await other).ok
    await asyncio.gather(*held)
    pool.close()


async def test_known_pairs_have_places_of_their_own_and_go_first(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    pool = HashPool(params, max_pending=1, per_source=8, priority_pending=2, hashing=fake)
    running = asyncio.create_task(pool.verify("a", "b", Lane("192.0.2.66")))
    await _until_started(fake)
    queued = asyncio.create_task(pool.verify("a", "b", Lane("192.0.2.67")))
    await _let_tasks_submit()
    with pytest.raises(PoolSaturated):  # the normal lane is full
        await pool.verify("a", "b", Lane("192.0.2.68"))
    known = [asyncio.create_task(pool.verify("k", "k", Lane("198.51.100.7", priority=True))) for _ in range(2)]
    await _let_tasks_submit()
    assert (pool.waiting(True), pool.waiting(False)) == (2, 1)
    order: list[str] = []
    queued.add_done_callback(lambda _: order.append("normal"))
    for task in known:
        task.add_done_callback(lambda _: order.append("known"))
    fake.release.set()
    await asyncio.gather(running, queued, *known)
    assert all(task.result().ok for task in known)
    assert order == ["known", "known", "normal"]
    pool.close()


async def test_a_cancelled_waiting_job_frees_its_places_and_its_sources_share_at_once(
    params: PasswordHashSection, fake: BlockingHashing
) -> None:
    """A client that gives up (disconnects, its session is cancelled) while its check waits must not
    keep the place, nor its source's share, until a thread reaches the job."""
    pool = HashPool(params.model_copy(update={"hash_workers": 1}), max_pending=2, per_source=2, hashing=fake)
    running = asyncio.create_task(pool.verify("x", "x", Lane("other")))
    await _until_started(fake)
    waiting = [asyncio.create_task(pool.verify("x", "x", Lane("attacker"))) for _ in range(2)]
    await _let_tasks_submit()
    assert pool.in_flight == 3 and pool.waiting(False) == 2
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert pool.in_flight == 1 and pool.waiting(False) == 0  # gone from the queue, not just marked
    again = [asyncio.create_task(pool.verify("x", "x", Lane("attacker"))) for _ in range(2)]
    await _let_tasks_submit()
    assert pool.waiting(False) == 2  # the source has its whole share again
    fake.release.set()
    assert [r.ok for r in await asyncio.gather(running, *again)] == [True, True, True]
    assert await asyncio.to_thread(pool.join, WAIT)  # a thread frees its place just after the result
    pool.close()
