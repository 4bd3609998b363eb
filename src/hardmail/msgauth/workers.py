"""The dedicated, bounded thread pool of message authentication: SPF, DKIM and ARC work runs here.

pyspf and dkimpy are synchronous and wait on DNS, so their work runs in threads. It must not run in
asyncio's default pool: local delivery and the queue use that one, and a few hostile messages whose
key look-ups never answer would starve them. This pool is sized from ``[inbound] worker_threads``
(:func:`configure`), created on first use, and shut down when the server stops (:func:`shutdown`).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

DEFAULT_WORKERS = 4
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
