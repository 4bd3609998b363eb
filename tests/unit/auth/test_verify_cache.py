"""The cache of successful verifications: keyed by an HMAC, expiring, off unless enabled."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hardmail.auth.authenticator import authenticate
from hardmail.auth.hashing import VerifyResult
from hardmail.auth.scram import derive_secrets
from hardmail.auth.verify_cache import VerifyCache, enable_verify_cache, verify_cache_for
from hardmail.core.clock import FakeClock
from hardmail.store.ports import Account
from hardmail.store.ports_credentials import AppPassword, CredentialState, LoginEvent

PASSWORD = "correct horse battery staple"


def test_hit_after_remember_until_ttl() -> None:
    cache, clock = VerifyCache(ttl=60), FakeClock()
    assert not cache.hit("a@x.example", "hash1", PASSWORD, clock)
    cache.remember("a@x.example", "hash1", PASSWORD, clock)
    assert cache.hit("a@x.example", "hash1", PASSWORD, clock)
    assert not cache.hit("a@x.example", "hash1", PASSWORD + "!", clock)
    assert not cache.hit("a@x.example", "hash2", PASSWORD, clock)  # password changed: new stored hash
    clock.advance(60)
    assert not cache.hit("a@x.example", "hash1", PASSWORD, clock)


def test_never_holds_the_password() -> None:
    cache, clock = VerifyCache(ttl=60), FakeClock()
    cache.remember("a@x.example", "hash1", PASSWORD, clock)
    assert PASSWORD not in repr(cache)
    stored = b"".join(cache._entries)  # the digests only
    assert PASSWORD.encode() not in stored and len(stored) == 32


def test_off_by_default_and_bounded() -> None:
    clock = FakeClock()
    off = VerifyCache()
    off.remember("a", "h", "p", clock)
    assert not off.hit("a", "h", "p", clock)
    small = VerifyCache(ttl=60, max_entries=2)
    for n in range(3):
        small.remember(f"user{n}", "h", "p", clock)
    assert not small.hit("user0", "h", "p", clock) and small.hit("user2", "h", "p", clock)


class CountingPool:
    def __init__(self) -> None:
        self.verified = 0

    async def verify(self, stored_hash: str, password: str, lane: object = None) -> VerifyResult:
        self.verified += 1
        return VerifyResult(ok=password == PASSWORD)

    async def dummy_verify(self, lane: object = None) -> None:
        return None


class Credentials:
    async def get_credentials(self, address: str) -> CredentialState:
        return CredentialState(address, scram=derive_secrets(PASSWORD, 10000))

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None:
        return None

    async def append_login_event(self, event: LoginEvent) -> None:
        return None


async def test_authenticator_skips_hashing_for_a_cached_success() -> None:
    pool, clock = CountingPool(), FakeClock()
    store: Any = SimpleNamespace(credentials=Credentials())

    async def get_account(address: str) -> Account:
        return Account(address=address, password_hash="$argon2id$stored")

    store.get_account = get_account
    enable_verify_cache(pool, 60)
    assert verify_cache_for(pool).ttl == 60
    for _ in range(3):
        outcome = await authenticate(store, pool, "alice@example.test", PASSWORD, clock=clock)  # type: ignore[arg-type]
        assert outcome.account == "alice@example.test"
    assert pool.verified == 1
    wrong = await authenticate(store, pool, "alice@example.test", "wrong", clock=clock)  # type: ignore[arg-type]
    assert wrong.account is None and pool.verified == 2  # a failure always costs a verification
    enable_verify_cache(pool, 0)
    await authenticate(store, pool, "alice@example.test", PASSWORD, clock=clock)  # type: ignore[arg-type]
    assert pool.verified == 3
