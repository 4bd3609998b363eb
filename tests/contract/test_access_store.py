"""The access store on every backend: ranges, bans, failure counts, known sources, counters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete

from hardmail.policy.access import Direction, IpRange
from hardmail.policy.bans import Ban
from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_access import AccessStore, AuthFailure
from hardmail.store.sql.tables_access import (
    access_auth_failures,
    access_bans,
    access_counters,
    access_known_sources,
    access_ranges,
)

T0 = 1_700_000_000.0


@pytest.fixture
async def access(store: Store) -> AsyncIterator[AccessStore]:
    """The store's access part, emptied first (PostgreSQL keeps one database per test session)."""
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table in (access_auth_failures, access_bans, access_counters, access_known_sources, access_ranges):
            await conn.execute(delete(table))
    yield store.access


async def test_ranges_round_trip(access: AccessStore) -> None:
    office = IpRange("Office", 30, "10.1.0.0", "10.1.255.255", protocols=frozenset({"smtp", "imap"}),
                     deliveries=frozenset({Direction.LOCAL_LOCAL}), auth_required=frozenset(),
                     tls_for_auth=False, expires_at=T0 + 60)
    v6 = IpRange("Lab", 5, "2001:db8::", "2001:db8::ffff")
    await access.add_range(office)
    await access.add_range(v6)
    assert await access.list_ranges() == [v6, office]
    with pytest.raises(AlreadyExists):
        await access.add_range(office)
    await access.remove_range("Office")
    with pytest.raises(NotFound):
        await access.remove_range("Office")
    assert await access.list_ranges() == [v6]


async def test_bans_are_replaced_listed_and_removed(access: AccessStore) -> None:
    first = Ban("192.0.2.7", "failures", "5 failed logins", T0, T0 + 3600)
    await access.put_ban(first)
    second = Ban("192.0.2.7", "failures", "again", T0 + 4000, T0 + 4000 + 86400, offences=2)
    await access.put_ban(second)
    subnet = Ban("2001:db8::/64", "admin", "by hand", T0 + 10, T0 + 20, by_admin=True)
    await access.put_ban(subnet)
    assert await access.get_bans(["192.0.2.7", "192.0.2.0/24"]) == [second]
    assert [b.subject for b in await access.list_bans()] == ["192.0.2.7", "2001:db8::/64"]
    assert await access.remove_ban("192.0.2.7") is True
    assert await access.remove_ban("192.0.2.7") is False
    assert await access.list_bans() == [subnet]


async def test_active_bans_are_listed_with_one_query(access: AccessStore) -> None:
    ended = Ban("192.0.2.1", "failures", "x", T0 - 7200, T0 - 3600)
    ends_now = Ban("192.0.2.2", "failures", "x", T0 - 3600, T0)
    host = Ban("192.0.2.3", "failures", "x", T0 - 10, T0 + 3600, offences=2)
    site = Ban("2001:db8:1::/48", "admin", "by hand", T0 - 5, T0 + 86400, by_admin=True)
    for ban in (ended, ends_now, host, site):
        await access.put_ban(ban)
    assert sorted(await access.list_active_bans(T0), key=lambda b: b.subject) == [host, site]
    assert len(await access.list_active_bans(T0 - 3601)) == 4  # each ends after that time
    assert await access.list_active_bans(T0 + 86400) == []
    await access.remove_ban("192.0.2.3")
    assert await access.list_active_bans(T0) == [site]


async def test_failure_stats_count_within_the_window(access: AccessStore) -> None:
    def failure(at: float, ip: str, account: str) -> AuthFailure:
        return AuthFailure(at, ip, ip.rpartition(".")[0] + ".0/24", account)

    for item in [failure(T0 - 1000, "192.0.2.1", "a@x.example"),  # too old
                 failure(T0, "192.0.2.1", "a@x.example"), failure(T0 + 1, "192.0.2.1", "a@x.example"),
                 failure(T0 + 2, "192.0.2.1", "b@x.example"), failure(T0 + 3, "192.0.2.2", "a@x.example"),
                 failure(T0 + 4, "192.0.2.1", ""), failure(T0 + 5, "198.51.100.1", "a@x.example")]:
        await access.record_failure(item)
    stats = await access.failure_stats("192.0.2.1", "192.0.2.0/24", "a@x.example", T0)
    assert (stats.ip_failures, stats.subnet_failures, stats.account_ip_failures) == (4, 5, 2)
    assert (stats.accounts_from_ip, stats.ips_for_account) == (2, 3)
    assert (stats.accounts_from_subnet, stats.accounts_total, stats.sources_total) == (2, 2, 3)
    assert await access.prune(T0) >= 1
    assert (await access.failure_stats("192.0.2.1", "192.0.2.0/24", "a@x.example", 0)).ip_failures == 4


async def test_known_sources(access: AccessStore) -> None:
    assert not await access.is_known_source("a@x.example", "192.0.2.1")
    await access.remember_source("a@x.example", "192.0.2.1", T0)
    await access.remember_source("a@x.example", "192.0.2.1", T0 + 5)
    assert await access.is_known_source("a@x.example", "192.0.2.1")
    assert not await access.is_known_source("b@x.example", "192.0.2.1")
    assert await access.has_logged_in_from("192.0.2.1")
    assert not await access.has_logged_in_from("192.0.2.2")


async def test_counters_add_per_window(access: AccessStore) -> None:
    assert await access.add_to_counter("connections:192.0.2.1", 60, 0) == 0
    assert await access.add_to_counter("connections:192.0.2.1", 60, 1) == 1
    assert await access.add_to_counter("connections:192.0.2.1", 60, 2) == 3
    assert await access.add_to_counter("connections:192.0.2.1", 120, 1) == 1
    assert await access.add_to_counter("connections:192.0.2.1", 60, 0) == 3
    await access.prune(100)
    assert await access.add_to_counter("connections:192.0.2.1", 60, 0) == 0
