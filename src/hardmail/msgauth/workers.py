"""The dedicated, bounded thread pool of message authentication: SPF, DKIM and ARC work runs here.

pyspf and dkimpy are synchronous and wait on DNS, so their work runs in threads. It must not run in
asyncio's default pool: local delivery and the queue use that one, and a few hostile messages whose
key look-ups never answer would starve them. This pool is sized from ``[inbound] worker_threads``
(:func:`configure`), created on first use, and shut down when the server stops (:func:`shutdown`).

A check that reads a whole message (DKIM, ARC) holds its size from a per-event-loop budget
(:func:`whole_message`) while it runs: the threads alone would let ``worker_threads`` messages of
``[smtp] max_message_size`` (and dkimpy's copies of them) be in memory at once, so eight hostile
50 MB messages with a DKIM-Signature field would undo the bounded memory of streaming to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

DEFAULT_WORKERS = 4
WHOLE_MESSAGE_BYTES = 64 * 1024 * 1024  # bytes of messages read whole at once per event loop
_P = ParamSpec("_P")
_T = TypeVar("_T")

class _Pool:
    """The pool and the size it should have, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.size = DEFAULT_WORKERS
        self.executor: ThreadPoolExecutor | None = None
        self.executor_size = 0


_POOL = _Pool()


def configure(workers: int) -> None:
    """Size the pool; a running pool of another size is replaced (its queued work still runs)."""
    with _POOL.lock:
        _POOL.size = max(1, workers)
        old = _POOL.executor
        if old is None or _POOL.executor_size == _POOL.size:
            return
        _POOL.executor = None
    old.shutdown(wait=False)


def executor() -> ThreadPoolExecutor:
    """The pool, created on first use."""
    with _POOL.lock:
        if _POOL.executor is None:
            _POOL.executor = ThreadPoolExecutor(max_workers=_POOL.size, thread_name_prefix="hardmail-msgauth")
            _POOL.executor_size = _POOL.size
        return _POOL.executor


async def run(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)`` in the message-authentication pool, awaited from the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor(), functools.partial(func, *args, **kwargs))


def shutdown() -> None:
    """Stop the pool without waiting: a thread still in a look-up ends at its deadline."""
    with _POOL.lock:
        old, _POOL.executor = _POOL.executor, None
    if old is not None:
        old.shutdown(wait=False)


class _Budget:
    """Bytes of messages being read whole on one event loop; waiters are served in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, size: int) -> int:
        size = min(size, self.limit)  # a message bigger than the budget runs alone
        if not self._waiters and self.used + size <= self.limit:
            self.used += size
            return size
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif entry[1].done() and not entry[1].cancelled():
                self.release(size)  # granted in the same turn as it was cancelled
            raise
        return size

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiters and self.used + self._waiters[0][0] <= self.limit:
            wanted, future = self._waiters.popleft()
            if not future.done():
                self.used += wanted
                future.set_result(None)


_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Budget] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def whole_message(size: int) -> AsyncIterator[None]:
    """Hold ``size`` bytes of this event loop's WHOLE_MESSAGE_BYTES while a message is read whole."""
    loop = asyncio.get_running_loop()
    budget = _BUDGETS.get(loop)
    if budget is None:
        budget = _BUDGETS[loop] = _Budget(WHOLE_MESSAGE_BYTES)
    held = await budget.acquire(size)
    try:
        yield
    finally:
        budget.release(held)
