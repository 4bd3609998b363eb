"""``HashPool``: password hashing off the event loop, in a bounded thread pool.

Argon2 is memory- and CPU-hard on purpose, so a flood of logins must not queue without limit: at
most ``hash_workers`` jobs run and at most ``max_pending`` wait; one more raises
:class:`PoolSaturated`, which the SMTP layer answers with 454 4.7.0 (RFC 4954 6).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

from hardmail.auth.hashing import BoundHasher, VerifyResult
from hardmail.config.schema import PasswordHashSection

T = TypeVar("T")


class PoolSaturated(Exception):
    """Too many password checks are already waiting; try again later."""


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
        hashing: PasswordHashing | None = None,
    ) -> None:
        self._workers = params.hash_workers
        self._max_pending = params.hash_workers * 8 if max_pending is None else max_pending
        self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="hardmail-hash")
        if hashing is None:
            hashing = BoundHasher(params)
            self._executor.submit(hashing.prepare)  # so the first dummy_verify costs no extra
        self._hashing: PasswordHashing = hashing
        self._lock = threading.Condition()
        self._in_flight = 0  # submitted and not finished: running plus waiting

    def __repr__(self) -> str:
        return f"HashPool(workers={self._workers}, max_pending={self._max_pending})"

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    async def verify(self, stored_hash: str, password: str) -> VerifyResult:
        return await self._run(self._hashing.verify, stored_hash, password)

    async def hash(self, password: str) -> str:
        return await self._run(self._hashing.hash, password)

    async def dummy_verify(self) -> None:
        await self._run(self._hashing.dummy_verify)

    def join(self, timeout: float | None = None) -> bool:
        """Block (in a thread, not on the loop) until no job is in flight; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        """Stop accepting work; waiting jobs are cancelled, running ones finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, function: Callable[..., T], *args: str) -> T:
        return await asyncio.wrap_future(self._submit(function, *args))

    def _submit(self, function: Callable[..., T], *args: str) -> Future[T]:
        with self._lock:
            if self._in_flight >= self._workers + self._max_pending:
                raise PoolSaturated("too many password checks are waiting")
            self._in_flight += 1
        try:
            future = self._executor.submit(function, *args)
        except BaseException:
            self._job_done(None)
            raise
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _future: object) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()
