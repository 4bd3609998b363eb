"""The server's look-up cache (hardmail.store.cache): TTL on a fake clock, negative answers,
immediate invalidation by writes made through it, the size bound, and reads racing writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hardmail.core.clock import FakeClock
from hardmail.store import open_store
from hardmail.store.cache import CachedStore, TtlCache, cached_store
from hardmail.store.ports import AlreadyExists, Domain, Store

TTL = 5.0


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[Store]:
    """The store as another process (the CLI) sees it: no cache."""
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    await opened.migrate()
    await opened.add_domain("example.org")
    await opened.add_account("ann@example.org", "hash-1")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cached(raw: Store, clock: FakeClock) -> Store:
    return cached_store(raw, clock, TTL)


async def test_another_process_change_is_seen_after_the_ttl(raw: Store, cached: Store, clock: FakeClock) -> None:
    assert (await cached.get_account("ann@example.org")) is not None
    await raw.set_account_enabled("ann@example.org", False)
    account = await cached.get_account("ann@example.org")
    assert account is not None and account.enabled  # still the cached answer
    clock.advance(TTL)
    account = await cached.get_account("ann@example.org")
    assert account is not None and not account.enabled


async def test_not_found_is_cached_too(raw: Store, cached: Store, clock: FakeClock) -> None:
    assert await cached.get_domain("example.net") is None
    await raw.add_domain("example.net")
    assert await cached.get_domain("example.net") is None
    clock.advance(TTL)
    found = await cached.get_domain("example.net")
    assert found is not None and found.name == "example.net"


async def test_writes_through_the_wrapper_take_effect_at_once(cached: Store) -> None:
    assert await cached.get_domain("example.net") is None
    assert await cached.get_alias("info@example.org") is None
    assert await cached.aliases_targeting("ann@example.org") == []
    await cached.add_domain("example.net")
    await cached.add_alias("info@example.org", ("ann@example.org",))
    assert await cached.get_domain("example.net") is not None
    assert await cached.get_alias("info@example.org") is not None
    assert [a.source for a in await cached.aliases_targeting("ann@example.org")] == ["info@example.org"]
    await cached.set_account_enabled("ann@example.org", False)
    account = await cached.get_account("ann@example.org")
    assert account is not None and not account.enabled


async def test_a_failed_write_still_empties_the_cache(raw: Store, cached: Store) -> None:
    assert await cached.get_domain("example.net") is None
    await raw.add_domain("example.net")
    with pytest.raises(AlreadyExists):
        await cached.add_domain("example.org")
    assert await cached.get_domain("example.net") is not None


async def test_a_password_change_through_credentials_drops_the_cached_account(cached: Store) -> None:
    before = await cached.get_account("ann@example.org")
    assert before is not None and before.password_hash == "hash-1"
    await cached.credentials.set_password("ann@example.org", "hash-2", None)
    after = await cached.get_account("ann@example.org")
    assert after is not None and after.password_hash == "hash-2"
    assert await cached.credentials.upgrade_hash("ann@example.org", "hash-3", None, expected_hash="hash-2")
    upgraded = await cached.get_account("ann@example.org")
    assert upgraded is not None and upgraded.password_hash == "hash-3"


def test_the_cache_is_bounded_least_recently_used_first(clock: FakeClock) -> None:
    cache = TtlCache(clock, TTL, max_entries=2)
    cache.put(("domain", "a"), 1)
    cache.put(("domain", "b"), 2)
    assert cache.get(("domain", "a")) == (True, 1)  # a is now the most recently used
    cache.put(("domain", "c"), 3)
    assert len(cache) == 2
    assert cache.get(("domain", "b")) == (False, None)
    assert cache.get(("domain", "a")) == (True, 1)


class _SlowDomains:
    """A store whose get_domain waits for a signal, to let a write happen during the read."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.answer: Domain | None = None
        self.credentials = object()

    async def get_domain(self, name: str) -> Domain | None:
        answer = self.answer
        self.started.set()
        await self.release.wait()
        return answer

    async def add_domain(self, name: str) -> Domain:
        self.answer = Domain(name)
        return self.answer


async def test_a_read_that_raced_a_write_is_not_cached(clock: FakeClock) -> None:
    inner = _SlowDomains()
    cached = CachedStore(inner, TtlCache(clock, TTL))  # type: ignore[arg-type]
    reading = asyncio.create_task(cached.get_domain("example.net"))
    await inner.started.wait()  # the read has begun and holds the old answer (None)
    await cached.add_domain("example.net")
    inner.release.set()
    assert await reading is None
    assert await cached.get_domain("example.net") == Domain("example.net")


async def test_zero_seconds_turns_the_cache_off(raw: Store, clock: FakeClock) -> None:
    assert cached_store(raw, clock, 0) is raw
