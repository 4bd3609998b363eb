"""Process-wide event counters (``auth.spray_detected``, ``auth.account_under_attack``,
``auth.audit_write_failed``, ...), for a metrics endpoint to read later and for tests.

A plain in-memory ``collections.Counter`` behind a lock: counting must never fail or block the
code that counts, and each server process counts its own events (a reader sums the processes).
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(name: str, amount: int = 1) -> int:
    """Add ``amount`` to the counter ``name``; its new value."""
    with _lock:
        _counts[name] += amount
        return _counts[name]


def value(name: str) -> int:
    with _lock:
        return _counts[name]


def snapshot() -> dict[str, int]:
    """Every counter and its value, at once."""
    with _lock:
        return dict(_counts)
