"""The access hook's accept path makes no store round trip per connection or per RCPT: bans come
from a snapshot refreshed at most every BAN_REFRESH_SECONDS (one query however many sessions ask),
ranges are remembered per address, and new connections per minute are counted in memory."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.policy import access as access_policy
from hardmail.policy.access import IpRange
from hardmail.policy.bans import Ban, BanDecision
from hardmail.server.access_hook import BAN_REFRESH_SECONDS, BANNED, RANGE_CACHE_SECONDS, AccessHook, Refreshed
from hardmail.server.hooks import SessionFacts
from support.memory_access import MemoryAccessStore, MemoryStore


class CountingAccess(MemoryAccessStore):
    """Counts every call, and lets other tasks run inside each one, as a real round trip does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name.startswith("_") or not asyncio.iscoroutinefunction(found):
            return found
        calls = super().__getattribute__("calls")

        async def counted(*args: Any) -> Any:
            calls[name] += 1
            await asyncio.sleep(0)  # a yield to the loop, not a wait
            return await found(*args)

        return counted


def make_hook(refresh: float = BAN_REFRESH_SECONDS, **sections: Any) -> tuple[AccessHook, CountingAccess, FakeClock]:
    access, clock = CountingAccess(), FakeClock()
    store = MemoryStore(access=access, domains={"example.test"})
    hook = AccessHook(store, Config.model_validate(sections), clock,  # type: ignore[arg-type]
                      sleeper=lambda _: asyncio.sleep(0), ban_refresh_seconds=refresh)
    return hook, access, clock


def facts(ip: str = "198.51.100.7", session: str = "s1", listener: str = "smtp") -> SessionFacts:
    return SessionFacts(session_id=session, listener=listener, peer_ip=ip, peer_port=1, helo=None, tls=None,
                        account=None)


def admin_ban(subject: str, clock: FakeClock, seconds: float = 3600) -> Ban:
    """A ban as the CLI writes it: straight into the store, from another process."""
    return Ban(subject, "admin", "by hand", clock.now(), clock.now() + seconds, by_admin=True)


async def connect_many(hook: AccessHook, ips: Sequence[str]) -> list[Any]:
    replies = await asyncio.gather(*(hook.on_connect(facts(ip, f"s{n}")) for n, ip in enumerate(ips)))
    for n in range(len(ips)):
        await hook.on_disconnect(facts(session=f"s{n}"))
    return replies


async def test_connections_and_recipients_cost_no_writes_and_at_most_one_query_each() -> None:
    hook, access, _ = make_hook()
    replies = await connect_many(hook, [f"198.51.100.{n}" for n in range(10)] + ["203.0.113.1"] * 10)
    assert replies == [None] * 20
    for _ in range(20):
        await hook.relay_rules("203.0.113.1", "someone@elsewhere.example")
    assert access.calls["add_to_counter"] == 0 and access.calls["get_bans"] == 0
    assert access.calls["list_active_bans"] == 1 and access.calls["list_ranges"] == 1
    assert set(access.calls) <= {"list_active_bans", "list_ranges", "prune"}
    for _ in range(3):  # AUTH asks the store as well: rare next to connections, and it hashes anyway
        assert await hook.before_auth(facts("203.0.113.1"), "PLAIN") is None
    assert access.calls["get_bans"] == 3


async def test_a_ban_made_elsewhere_applies_to_auth_at_once() -> None:
    hook, access, clock = make_hook()
    assert await hook.on_connect(facts(session="a")) is None
    await access.put_ban(admin_ban("198.51.100.7", clock))  # another worker, or the CLI
    assert await hook.before_auth(facts(session="a"), "PLAIN") == BANNED


async def test_an_active_ban_is_not_made_again_by_failures_seen_elsewhere() -> None:
    hook, access, _ = make_hook()
    first = await hook.ban(BanDecision("198.51.100.7", "failures", "x"), "auto")
    again = await hook.ban(BanDecision("198.51.100.7", "failures", "x"), "auto")
    assert again == first and again.offences == 1  # no second offence, no longer ban
    assert access.calls["put_ban"] == 1


async def test_twenty_sessions_at_refresh_time_cause_one_query() -> None:
    hook, access, clock = make_hook()
    await connect_many(hook, ["198.51.100.1"])
    clock.advance(max(BAN_REFRESH_SECONDS, RANGE_CACHE_SECONDS))
    await connect_many(hook, [f"198.51.100.{n}" for n in range(20)])
    assert (access.calls["list_active_bans"], access.calls["list_ranges"]) == (2, 2)


async def test_a_ban_by_this_process_applies_to_the_next_connection() -> None:
    hook, access, _ = make_hook()
    assert await hook.on_connect(facts(session="a")) is None
    await hook.ban(BanDecision("198.51.100.7", "admin", "test"), "admin")
    assert await hook.on_connect(facts(session="b")) == BANNED
    assert await hook.before_auth(facts(session="a"), "PLAIN") == BANNED
    assert access.calls["list_active_bans"] == 1  # no reload was needed


async def test_an_automatic_ban_applies_to_the_next_connection() -> None:
    hook, _, _ = make_hook(access={"bans": {"failures": 2}})
    assert await hook.on_connect(facts(session="a")) is None
    replies = [await hook.after_auth(facts(session="a"), "alice@example.test", False, "x") for _ in range(2)]
    assert replies == [None, BANNED]
    assert await hook.on_connect(facts(session="b", listener="submission")) == BANNED
    assert await hook.on_connect(facts(session="c")) is None  # a login ban: the MX port still takes mail


async def test_a_cli_ban_and_unban_apply_after_the_refresh_interval() -> None:
    hook, access, clock = make_hook()
    assert await hook.on_connect(facts(session="a")) is None
    await access.put_ban(admin_ban("198.51.100.0/24", clock))  # `hardmail ban add` in another process
    assert await hook.on_connect(facts(session="b")) is None  # the snapshot is not reloaded yet
    clock.advance(BAN_REFRESH_SECONDS)
    assert await hook.on_connect(facts(session="c")) == BANNED
    assert await hook.before_auth(facts(session="a"), "PLAIN") == BANNED
    await access.remove_ban("198.51.100.0/24")  # `hardmail ban remove`
    clock.advance(BAN_REFRESH_SECONDS)
    assert await hook.on_connect(facts(session="d")) is None


@pytest.mark.parametrize("apply", [lambda hook: hook.forget_cached_bans(), None])
async def test_a_cli_ban_applies_at_once_when_asked_or_configured(apply: Callable[[AccessHook], None] | None) -> None:
    hook, access, clock = make_hook(refresh=BAN_REFRESH_SECONDS if apply else 0.0)
    assert await hook.on_connect(facts(session="a")) is None
    await access.put_ban(admin_ban("198.51.100.7", clock))
    if apply:
        apply(hook)
    assert await hook.on_connect(facts(session="b")) == BANNED


class SlowBanQuery(CountingAccess):
    """The ban query reads the store, then is held until ``release`` is set (a slow round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.has_read, self.release = asyncio.Event(), asyncio.Event()

    async def list_active_bans(self, now: float) -> list[Ban]:
        found = await super().list_active_bans(now)
        self.has_read.set()
        await self.release.wait()
        return found


async def test_an_own_ban_during_a_slow_refresh_is_not_lost() -> None:
    access, clock = SlowBanQuery(), FakeClock()
    hook = AccessHook(MemoryStore(access=access), Config(), clock)  # type: ignore[arg-type]
    waiting = asyncio.create_task(hook.on_connect(facts(session="a", listener="submission")))
    await asyncio.wait_for(access.has_read.wait(), 10)  # the query answered "no bans", still on its way
    await hook.ban(BanDecision("198.51.100.7", "failures", "test"), "auto")
    access.release.set()
    assert await waiting == BANNED  # the stale answer did not hide the ban
    assert await hook.on_connect(facts(session="b", listener="submission")) == BANNED
    assert access.calls["list_active_bans"] == 1
    await access.remove_ban("198.51.100.7")  # lifted in the store: the next refresh believes the store
    clock.advance(BAN_REFRESH_SECONDS)
    assert await hook.on_connect(facts(session="c")) is None


async def test_a_reload_asked_for_during_a_load_is_not_lost() -> None:
    gate, loads = asyncio.Event(), [0]

    async def load() -> int:
        loads[0] += 1
        if loads[0] == 1:
            await gate.wait()
        return loads[0]

    value = Refreshed(load, 0, 10.0)
    first = asyncio.create_task(value.get(0.0))
    await asyncio.sleep(0)  # a yield: the first load starts and is held
    value.expire()  # e.g. forget_cached_bans() while the store was being read
    gate.set()
    assert await first == 1
    assert await value.get(1.0) == 2  # loaded again although 10 s have not passed
    assert await value.get(2.0) == 2


async def test_new_connections_per_minute_counted_in_memory() -> None:
    hook, access, clock = make_hook(access={"limits": {"new_connections_per_minute": 3}})
    clock.advance(60 - clock.now() % 60)  # the start of a minute
    replies = await connect_many(hook, ["198.51.100.7"] * 4)
    assert [reply.code if reply else None for reply in replies].count(421) == 1  # the 4th, whichever it is
    assert replies.count(None) == 3
    assert await hook.on_connect(facts("198.51.100.8", "other")) is None  # another address: its own count
    clock.advance(59)
    refused = await hook.on_connect(facts(session="late"))
    assert refused is not None and refused.code == 421  # still the same minute
    clock.advance(1)
    assert await hook.on_connect(facts(session="next")) is None  # the next minute
    assert access.calls["add_to_counter"] == 0


async def test_ranges_are_remembered_per_address_and_follow_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, access, clock = make_hook()
    matched: Counter[str] = Counter()
    real = access_policy.matching_range

    def counting(ranges: Any, ip: str, now: float) -> IpRange | None:
        matched[ip] += 1
        return real(ranges, ip, now)

    monkeypatch.setattr(access_policy, "matching_range", counting)
    for _ in range(20):
        await hook.relay_rules("10.1.2.3", "someone@elsewhere.example")
    assert matched["10.1.2.3"] == 1
    await access.add_range(IpRange("Office", 30, "10.1.0.0", "10.1.255.255", auth_required=frozenset(),
                                   expires_at=clock.now() + RANGE_CACHE_SECONDS + 5))
    clock.advance(RANGE_CACHE_SECONDS)  # reloaded: a new range, a new memo
    found = await hook.range_for("10.1.2.3")
    assert found is not None and found.name == "Office"
    clock.advance(5)  # the range expires before the next reload: the memo must not outlive it
    found = await hook.range_for("10.1.2.3")
    assert found is not None and found.name == "Internet"


async def test_trusted_networks_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hook, _, _ = make_hook(relay={"trusted_networks": ["10.0.0.0/8"]})
    parsed: list[str] = []
    real = ipaddress.ip_network

    def counting(address: Any, strict: bool = True) -> Any:
        parsed.append(str(address))
        return real(address, strict)

    monkeypatch.setattr(ipaddress, "ip_network", counting)
    assert (await hook.relay_rules("10.1.2.3", "")).trusted is True
    assert (await hook.relay_rules("::ffff:10.1.2.3", "")).trusted is True
    assert (await hook.relay_rules("192.0.2.1", "")).trusted is False
    assert parsed == []
