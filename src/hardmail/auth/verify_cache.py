"""A short-lived cache of successful password verifications, so a client that logs in on every
connection (many phones and mail clients do) costs one Argon2 verification per ``ttl`` seconds.

An entry is an HMAC-SHA256, under a random key made at start-up and never stored, of the user
name, the stored password hash and the password: the cache holds neither the password nor a value
that could be checked against a guess without that key. A changed password (a new stored hash)
misses the cache. Only successes are remembered; a failure always costs a full verification.
There is one cache per running server (per hashing pool), off until :func:`enable_verify_cache`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import weakref
from collections import OrderedDict

from hardmail.core.clock import Clock

MAX_ENTRIES = 10_000


class VerifyCache:
    def __init__(self, ttl: float = 0.0, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self._max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, float] = OrderedDict()  # digest -> expiry (monotonic)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VerifyCache(ttl={self.ttl}, entries={len(self._entries)})"

    def _digest(self, username: str, stored_hash: str, password: str) -> bytes:
        message = b"\0".join(part.encode("utf-8", "surrogatepass") for part in (username, stored_hash, password))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def hit(self, username: str, stored_hash: str, password: str, clock: Clock) -> bool:
        """True when these credentials verified successfully less than ``ttl`` seconds ago."""
        if self.ttl <= 0:
            return False
        digest = self._digest(username, stored_hash, password)
        with self._lock:
            expiry = self._entries.get(digest)
            if expiry is None:
                return False
            if expiry <= clock.monotonic():
                del self._entries[digest]
                return False
            return True

    def remember(self, username: str, stored_hash: str, password: str, clock: Clock) -> None:
        if self.ttl <= 0:
            return
        digest = self._digest(username, stored_hash, password)
        with self._lock:
            self._entries[digest] = clock.monotonic() + self.ttl
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# One cache per hashing pool, that is per running server; a pool without one verifies every time.
_CACHES: weakref.WeakKeyDictionary[object, VerifyCache] = weakref.WeakKeyDictionary()


def enable_verify_cache(pool: object, ttl: float) -> VerifyCache | None:
    """Give the server owning ``pool`` a cache of ``ttl`` seconds (0: none)."""
    if ttl <= 0:
        _CACHES.pop(pool, None)
        return None
    cache = VerifyCache(ttl)
    _CACHES[pool] = cache
    return cache


def verify_cache_for(pool: object) -> VerifyCache:
    """The pool's cache, or one that is always off."""
    try:
        return _CACHES.get(pool) or _DISABLED
    except TypeError:  # a pool that cannot be weakly referenced (a test double) never has one
        return _DISABLED


_DISABLED = VerifyCache(0.0)
