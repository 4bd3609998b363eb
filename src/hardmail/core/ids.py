"""Identifiers for sessions, messages and queue entries: unique, time-sortable, safe in file names.

Ids are names, not secrets: the random part comes from :mod:`random` (seeded from the OS, reseeded
in a forked child), which costs no system call, instead of :mod:`secrets` (one ``getrandom`` per id).
"""

from __future__ import annotations

import random
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _base32(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        digits.append(_CROCKFORD[digit])
    return "".join(reversed(digits))


def new_id(now: float | None = None) -> str:
    """20 characters of Crockford base32: 10 for the time in milliseconds (ids sort by creation),
    then 50 random bits."""
    millis = int((time.time() if now is None else now) * 1000)
    return _base32(millis, 10) + _base32(random.getrandbits(50), 10)
