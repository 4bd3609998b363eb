"""``HashPool``: password hashing off the event loop, in a bounded thread pool.

Argon2 is memory- and CPU-hard on purpose, so a flood of logins must not queue without limit: at
most ``hash_workers`` jobs run and at most ``max_pending`` wait; one more raises
:class:`PoolSaturated`, which the SMTP layer answers with 454 4.7.0 (RFC 4954 6).

The queue is fair (a :class:`Lane` per job): one source (its address key) may have at most
``per_source`` jobs running or waiting, so that one client cannot fill the queue; its excess is
refused before it reaches the pool. Logins of a known source/account pair go in the priority
lane, which has places of its own (``priority_pending``) and is served first. The waiting jobs
are kept here rather than in the executor's queue because ThreadPoolExecutor has no priorities:
a job goes to the executor only when a thread is free for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from hardmail.auth.hashing import BoundHasher, VerifyResult
from hardmail.config.schema import PasswordHashSection

T = TypeVar("T")


class PoolSaturated(Exception):
    """Too many password checks are already waiting (or from this source); try again later."""


class ClientGone(PoolSaturated):
    """The client went away while its check waited for a thread: the check was dropped."""


# Set by a protocol session to a future that is done once its client's connection is lost, so that
# a check still waiting for a thread is dropped (its place and its source's share freed) rather
# than hashed for nobody. A context variable: each connection's task has its own.
CLIENT_GONE: ContextVar[asyncio.Future[None] | None] = ContextVar("hardmail_client_gone", default=None)


@dataclass(frozen=True, slots=True)
class Lane:
    """Who a job is for: ``source`` is the fairness key ("" is not limited per source);
    ``priority`` is the known source/account pair lane."""

    source: str = ""
    priority: bool = False


DEFAULT_LANE = Lane()


@dataclass(slots=True, eq=False)  # compared by identity (a waiting job is looked up in its queue)
class _Job:
    function: Callable[..., object]
    args: tuple[str, ...]
    lane: Lane
    future: Future[object] = field(default_factory=Future)


class PasswordHashing(Protocol):
    """The blocking work the pool runs (:class:`hardmail.auth.hashing.BoundHasher`; fakes in tests)."""

    def hash(self, password: str) -> str: ...

    def verify(self, stored_hash: str, password: str) -> VerifyResult: ...

    def dummy_verify(self) -> None: ...


class CountingHasher:
    """Wraps a hasher and counts the hashes it computes (for the brute-force bench and tests:
    a banned source must cost none)."""

    def __init__(self, inner: PasswordHashing) -> None:
        self.inner = inner
        self.calls = 0
        self._lock = threading.Lock()

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def hash(self, password: str) -> str:
        self._count()
        return self.inner.hash(password)

    def verify(self, stored_hash: str, password: str) -> VerifyResult:
        self._count()
        return self.inner.verify(stored_hash, password)

    def dummy_verify(self) -> None:
        self._count()
        self.inner.dummy_verify()


class HashPool:
    def __init__(
        self,
        params: PasswordHashSection,
        *,
        max_pending: int | None = None,
        per_source: int | None = None,
        priority_pending: int | None = None,
        hashing: PasswordHashing | None = None,
    ) -> None:
        self._workers = params.hash_workers
        if max_pending is None:
            max_pending = params.max_pending or params.hash_workers * 8
        self._max_pending = max_pending
        if priority_pending is None:
            priority_pending = params.priority_pending or max_pending
        self._priority_pending = priority_pending
        self._per_source = params.per_source if per_source is None else per_source
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="hardmail-hash")
        if hashing is None:
            hashing = BoundHasher(params)
            self._executor.submit(hashing.prepare)  # so the first dummy_verify costs no extra
        self._hashing: PasswordHashing = hashing
        self._lock = threading.Condition()
        self._in_flight = 0  # submitted and not finished: running plus waiting
        self._running = 0
        self._lanes: Counter[bool] = Counter()  # priority? -> jobs running or waiting
        self._sources: Counter[tuple[bool, str]] = Counter()  # (priority, source) -> jobs
        self._waiting: dict[bool, deque[_Job]] = {True: deque(), False: deque()}
        self._closed = False

    def __repr__(self) -> str:
        return f"HashPool(workers={self._workers}, max_pending={self._max_pending}, per_source={self._per_source})"

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def waiting(self, priority: bool) -> int:
        """Jobs of one lane waiting for a thread (for tests and metrics)."""
        with self._lock:
            return len(self._waiting[priority])

    async def verify(self, stored_hash: str, password: str, lane: Lane = DEFAULT_LANE) -> VerifyResult:
        return await self._run(lane, self._hashing.verify, stored_hash, password)

    async def hash(self, password: str, lane: Lane = DEFAULT_LANE) -> str:
        return await self._run(lane, self._hashing.hash, password)

    async def dummy_verify(self, lane: Lane = DEFAULT_LANE) -> None:
        await self._run(lane, self._hashing.dummy_verify)

    def join(self, timeout: float | None = None) -> bool:
        """Block (in a thread, not on the loop) until no job is in flight; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Stop accepting work; waiting jobs are cancelled, running ones finish in the background."""
        with self._lock:
            self._closed = True
            dropped = [*self._waiting[True], *self._waiting[False]]
            self._waiting[True].clear()
            self._waiting[False].clear()
        for job in dropped:
            job.future.cancel()
            self._job_done(job, ran=False)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, lane: Lane, function: Callable[..., T], *args: str) -> T:
        gone = CLIENT_GONE.get()
        if gone is not None and gone.done():
            raise ClientGone("the client has gone")
        job = _Job(function, args, lane)
        self._admit(job)
        waiter = asyncio.wrap_future(job.future)
        if gone is not None:
            await asyncio.wait((waiter, gone), return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # cancels a waiting job (see _drop_if_waiting); a running one ends alone
                waiter.cancel()
                raise ClientGone("the client went away while its password check waited")
        result: T = await waiter  # type: ignore[assignment]
        return result

    def _admit(self, job: _Job) -> None:
        lane = job.lane
        with self._lock:
            if self._closed:
                raise RuntimeError("the password hashing pool is closed")
            room = self._priority_pending if lane.priority else self._max_pending
            if self._lanes[lane.priority] >= self._workers + room:
                raise PoolSaturated("too many password checks are waiting")
            if lane.source and self._sources[lane.priority, lane.source] >= self._per_source:
                raise PoolSaturated("too many password checks are waiting for this source")
            self._in_flight += 1
            self._lanes[lane.priority] += 1
            if lane.source:
                self._sources[lane.priority, lane.source] += 1
            start = self._running < self._workers
            if start:
                self._running += 1
            else:
                self._waiting[lane.priority].append(job)
        if start:
            self._start(job)
        else:
            job.future.add_done_callback(lambda _: self._drop_if_waiting(job))

    def _drop_if_waiting(self, job: _Job) -> None:
        """A waiting job whose caller gave up (cancelled, disconnected) frees its places at once
        instead of holding them, and its source's share, until a thread reaches it."""
        if not job.future.cancelled():
            return
        with self._lock:
            queue = self._waiting[job.lane.priority]
            if job not in queue:  # taken by a thread meanwhile (or dropped by close): done there
                return
            queue.remove(job)  # bounded by the lane's waiting places
        self._job_done(job, ran=False)

    def _start(self, job: _Job) -> None:
        try:
            self._executor.submit(self._work, job)
        except RuntimeError:  # shut down meanwhile
            job.future.cancel()
            self._job_done(job, ran=True)

    def _work(self, job: _Job) -> None:
        try:
            if job.future.set_running_or_notify_cancel():  # False: its caller gave up while it waited
                try:
                    job.future.set_result(job.function(*job.args))
                except BaseException as exc:  # handed to the caller, who awaits the future
                    job.future.set_exception(exc)
        finally:
            self._job_done(job, ran=True)

    def _job_done(self, job: _Job, *, ran: bool) -> None:
        """Free the job's places; a thread that ran it takes the next waiting job, priority first."""
        following: _Job | None = None
        with self._lock:
            self._in_flight -= 1
            self._lanes[job.lane.priority] -= 1
            if job.lane.source:
                key = (job.lane.priority, job.lane.source)
                self._sources[key] -= 1
                if self._sources[key] <= 0:
                    del self._sources[key]
            if ran:
                following = self._next_waiting()
                if following is None:
                    self._running -= 1
            self._lock.notify_all()
        if following is not None:
            self._start(following)

    def _next_waiting(self) -> _Job | None:
        for priority in (True, False):
            if self._waiting[priority]:
                return self._waiting[priority].popleft()
        return None
