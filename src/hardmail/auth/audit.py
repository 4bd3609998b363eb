"""Audit writes that must not fail a login: the login history, failure records, known sources,
an app password's last use.

A login must not fail because its audit trail could not be written (a full disk, a locked or
read-only database): the write is skipped, the first failure of each kind is logged as one
``auth.audit_write_failed`` error event, every failure is counted (``auth.audit_write_failed``
in :mod:`hardmail.ops.counters`), and the next successful write of that kind logs
``auth.audit_write_recovered``. Reads that AUTH cannot do without raise
:class:`AuthUnavailable` instead, which the protocols answer as a temporary failure (SMTP:
454 4.7.0, RFC 4954 6).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable

from hardmail.ops.counters import count
from hardmail.ops.log import log_event

FAILED_COUNTER = "auth.audit_write_failed"
_lock = threading.Lock()
_failing: set[str] = set()  # kinds of write whose last attempt failed


class AuthUnavailable(Exception):
    """The credentials cannot be checked now (the store cannot be read); try again later."""


async def audited(what: str, write: Awaitable[object]) -> bool:
    """Await ``write``; on any error degrade (see the module docstring). True when it was written."""
    try:
        await write
    except Exception as exc:  # whatever the store raises, the login goes on without this record
        _failed(what, exc)
        return False
    _succeeded(what)
    return True


def _failed(what: str, exc: Exception) -> None:
    total = count(FAILED_COUNTER)
    with _lock:
        first = what not in _failing
        _failing.add(what)
    if first:  # the next ones are counted, not logged: a full disk must not fill the log too
        log_event("auth.audit_write_failed", level="error", write=what, error=type(exc).__name__,
                  failed_so_far=total)


def _succeeded(what: str) -> None:
    with _lock:
        if what not in _failing:
            return
        _failing.discard(what)
    log_event("auth.audit_write_recovered", write=what)


def unavailable(what: str, exc: Exception) -> AuthUnavailable:
    """The error to raise when a read AUTH needs failed; logged (the error type only)."""
    count("auth.unavailable")
    log_event("auth.unavailable", level="error", read=what, error=type(exc).__name__)
    return AuthUnavailable("the credentials cannot be checked now")
