"""The access hook against an in-memory store and a fake clock: refusals at connect and before
AUTH, failure accounting into bans, the tarpit (recorded, never slept), limits and relay rules."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from hardmail.config.schema import Config
from hardmail.core.address import Address
from hardmail.core.clock import FakeClock
from hardmail.delivery.content import MessageContent
from hardmail.delivery.recipients import Resolution
from hardmail.ops.counters import value
from hardmail.policy.access import IpRange
from hardmail.policy.bans import BanDecision
from hardmail.proto.smtp.events import MailParams
from hardmail.server.access_hook import BANNED, CONNECTION_DENIED, PEER_UNKNOWN, AccessHook
from hardmail.server.hooks import MessageFacts, SessionFacts
from support.memory_access import MemoryAccessStore, MemoryStore


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_hook(**access: Any) -> tuple[AccessHook, MemoryStore, FakeClock, Sleeps]:
    store, clock, sleeps = MemoryStore(domains={"example.test"}), FakeClock(), Sleeps()
    hook = AccessHook(store, Config.model_validate({"access": access}), clock, sleeps)  # type: ignore[arg-type]
    return hook, store, clock, sleeps


def facts(ip: str = "198.51.100.7", session: str = "s1", listener: str = "submission",
          account: str | None = None, tls: bool = True) -> SessionFacts:
    return SessionFacts(session_id=session, listener=listener, peer_ip=ip, peer_port=1, helo=None,
                        tls={"version": "TLSv1.3"} if tls else None, account=account)


async def fail_logins(hook: AccessHook, ip: str, account: str, times: int) -> list[Any]:
    return [await hook.after_auth(facts(ip), account, False, "wrong password") for _ in range(times)]


async def test_ban_at_the_threshold_then_refused_at_connect_and_before_auth() -> None:
    hook, _, clock, sleeps = make_hook()
    replies = await fail_logins(hook, "198.51.100.7", "alice@example.test", 5)
    assert replies == [None, None, None, None, BANNED]
    assert sleeps.delays == [1.0, 2.0, 3.0]  # the first failure is free; the banning one does not wait
    assert await hook.on_connect(facts()) == BANNED
    assert await hook.before_auth(facts(), "PLAIN") == BANNED
    assert await hook.on_connect(facts("198.51.100.8")) is None  # a neighbour is not banned
    clock.advance(3600)
    assert await hook.on_connect(facts(session="s2")) is None  # the first ban lasts an hour


async def test_second_ban_lasts_a_day() -> None:
    hook, store, clock, _ = make_hook()
    await fail_logins(hook, "198.51.100.7", "alice@example.test", 5)
    clock.advance(3600 + 900)
    await fail_logins(hook, "198.51.100.7", "alice@example.test", 5)
    ban = store.access.bans["198.51.100.7"]
    assert (ban.offences, ban.expires_at - ban.created_at) == (2, 86400)


async def test_spraying_is_banned_before_the_per_address_threshold() -> None:
    hook, store, _, _ = make_hook()
    replies = [await hook.after_auth(facts(), f"user{n}@example.test", False, "unknown user") for n in range(4)]
    assert replies[-1] == BANNED and store.access.bans["198.51.100.7"].kind == "spraying"


async def test_distributed_guessing_raises_the_accounts_guard_and_bans_nobody() -> None:
    hook, store, _, sleeps = make_hook()
    home = "192.0.2.10"
    assert await hook.after_auth(facts(home), "alice@example.test", True, "ok") is None
    before = value("auth.account_under_attack")
    for n in range(10):
        await hook.after_auth(facts(f"203.0.113.{n}"), "alice@example.test", False, "wrong password")
    assert store.access.bans == {} and hook.guarded("alice@example.test")
    assert value("auth.account_under_attack") == before + 1  # one event when the guard goes up
    # the owner's typo from a new address is no ban; it only waits longer before its password is checked
    assert await hook.after_auth(facts("203.0.113.77"), "alice@example.test", False, "x") is None
    sleeps.delays.clear()
    slowed = await hook.gate_for("203.0.113.78").admit("alice@example.test")
    assert slowed.allowed and not slowed.priority and sleeps.delays == [hook.bans.guard_tarpit]
    sleeps.delays.clear()
    known = await hook.gate_for(home).admit("alice@example.test")
    assert known.allowed and known.priority and sleeps.delays == []  # the known source logs in normally
    assert not hook.guarded("bob@example.test")


async def test_subnet_ban_spares_the_owners_known_address_for_its_account_only() -> None:
    hook, store, _, _ = make_hook()
    home = "198.51.100.200"
    await hook.after_auth(facts(home), "alice@example.test", True, "ok")
    for n in range(11):
        await fail_logins(hook, f"198.51.100.{n + 1}", f"user{n}@example.test", 5)
    assert "198.51.100.0/24" in store.access.bans  # every rule evaluated: the subnet rule saw them all
    assert await hook.on_connect(facts(home, "h1")) is None  # the owner still connects ...
    assert await hook.before_auth(facts(home, "h1"), "PLAIN") is None
    assert (await hook.gate_for(home).admit("alice@example.test")).allowed  # ... and logs in to alice
    assert not (await hook.gate_for(home).admit("bob@example.test")).allowed  # but to no one else
    assert await hook.on_connect(facts("198.51.100.99", "n1")) == BANNED  # only-failing neighbours
    assert await hook.before_auth(facts("198.51.100.99", "n1"), "PLAIN") == BANNED
    assert await hook.on_connect(facts("198.51.100.99", "mx", listener="smtp")) is None  # the MX port takes mail


async def test_spraying_from_rotating_addresses_bans_the_subnet_and_raises_the_guard() -> None:
    hook, store, _, _ = make_hook()
    spotted = value("auth.spray_detected")
    replies = [await hook.after_auth(facts(f"198.51.100.{n % 24 + 1}"), f"user{n}@example.test", False,
                                     "unknown user") for n in range(30)]
    assert store.access.bans["198.51.100.0/24"].kind == "subnet-spraying"
    assert replies[:9] == [None] * 9 and replies[9] == BANNED
    assert value("auth.spray_detected") >= spotted + 1


async def test_a_global_spraying_campaign_raises_every_accounts_guard() -> None:
    hook, store, _, _ = make_hook()
    spotted = value("auth.spray_detected")
    for n in range(20):  # 20 accounts from 20 different /24s: no subnet crosses a threshold
        await hook.after_auth(facts(f"203.0.{n}.9"), f"user{n}@example.test", False, "unknown user")
    assert store.access.bans == {}
    assert hook.guarded("anyone@example.test") and value("auth.spray_detected") == spotted + 1


async def test_never_ban_list() -> None:
    hook, store, _, sleeps = make_hook(bans={"never_ban": ["198.51.100.0/24"]})
    assert await fail_logins(hook, "198.51.100.7", "alice@example.test", 8) == [None] * 8
    assert store.access.bans == {} and sleeps.delays  # it still waits in the tarpit


async def test_denied_range_is_refused_at_connect() -> None:
    hook, store, _, _ = make_hook()
    await store.access.add_range(IpRange("closed", 50, "203.0.113.0", "203.0.113.255", protocols=frozenset()))
    assert await hook.on_connect(facts("203.0.113.5", listener="smtp")) == CONNECTION_DENIED


async def test_stored_range_requiring_tls_for_auth() -> None:
    hook, store, _, _ = make_hook()
    await store.access.add_range(IpRange("lan", 50, "10.0.0.0", "10.255.255.255"))
    reply = await hook.before_auth(facts("10.0.0.1", tls=False), "PLAIN")
    assert reply is not None and reply.code == 538
    assert await hook.before_auth(facts("10.0.0.1", tls=True), "PLAIN") is None


async def test_concurrency_per_ip_and_release_on_disconnect() -> None:
    hook, _, _, _ = make_hook(limits={"connections_per_ip": 2})
    assert await hook.on_connect(facts(session="a")) is None
    assert await hook.on_connect(facts(session="b")) is None
    refused = await hook.on_connect(facts(session="c"))
    assert refused is not None and (refused.code, refused.enhanced) == (421, "4.7.0")
    await hook.on_disconnect(facts(session="c"))  # a refused session frees nothing
    await hook.on_disconnect(facts(session="a"))
    assert await hook.on_connect(facts(session="d")) is None


async def test_concurrency_per_subnet() -> None:
    hook, _, _, _ = make_hook(limits={"connections_per_subnet": 2})
    assert await hook.on_connect(facts("198.51.100.1", "a")) is None
    assert await hook.on_connect(facts("198.51.100.2", "b")) is None
    assert await hook.on_connect(facts("198.51.100.3", "c")) is not None
    assert await hook.on_connect(facts("198.51.101.3", "d")) is None


async def test_new_connections_per_minute() -> None:
    hook, _, clock, _ = make_hook(limits={"new_connections_per_minute": 3})
    for n in range(3):
        assert await hook.on_connect(facts(session=f"s{n}")) is None
        await hook.on_disconnect(facts(session=f"s{n}"))
    assert await hook.on_connect(facts(session="s9")) is not None
    clock.advance(60)
    assert await hook.on_connect(facts(session="s10")) is None


async def test_message_and_recipient_rates_per_account() -> None:
    hook, _, clock, _ = make_hook(limits={"messages_per_hour": 2, "recipients_per_hour": 3})
    alice = facts(account="alice@example.test")
    message = MessageFacts(sender="alice@example.test", recipients=("b@x.example",), mailboxes=(),
                           remote=("b@x.example",), content=MessageContent.in_memory(b"x"), size=1)
    rcpt = Address("b", "x.example")
    for _ in range(2):
        assert await hook.on_mail(alice, None, MailParams()) is None
        assert await hook.on_rcpt(alice, "alice@example.test", rcpt, Resolution("remote")) is None
        await hook.on_message(alice, message)
    refused = await hook.on_mail(alice, None, MailParams())
    assert refused is not None and refused.code == 451
    assert await hook.on_rcpt(alice, "alice@example.test", rcpt, Resolution("remote")) is None
    assert await hook.on_rcpt(alice, "alice@example.test", rcpt, Resolution("remote")) is not None
    assert await hook.on_mail(facts(), None, MailParams()) is None  # unauthenticated: not counted here
    clock.advance(3600)
    assert await hook.on_mail(alice, None, MailParams()) is None


@pytest.mark.parametrize(("sender", "sender_local"), [("alice@example.test", True), ("x@elsewhere.example", False),
                                                      ("", False)])
async def test_relay_rules(sender: str, sender_local: bool) -> None:
    hook, _, _, _ = make_hook()
    rules = await hook.relay_rules("203.0.113.1", sender)
    assert rules.range is not None and rules.range.name == "Internet"
    assert rules.sender_local is sender_local and rules.trusted is False


BAN_LINE = re.compile(r'"level": "warning", "event": "access\.ban", "subject": "(?P<subject>[^"]+)", "kind": "\w+"')


async def test_each_ban_logs_one_fixed_format_line(caplog: pytest.LogCaptureFixture) -> None:
    hook, _, _, _ = make_hook()
    await fail_logins(hook, "198.51.100.7", "alice@example.test", 5)
    lines = [r.getMessage() for r in caplog.records if '"access.ban"' in r.getMessage()]
    assert len(lines) == 1
    match = BAN_LINE.search(lines[0])
    assert match is not None and match.group("subject") == "198.51.100.7"


# IPv6: one host holds a whole /64 and may use a fresh address for every try --------------------

async def test_ipv6_rotation_inside_a_64_is_banned_as_one_address() -> None:
    hook, store, _, sleeps = make_hook()
    replies = [await hook.after_auth(facts(f"2001:db8:1:2::{n + 1:x}"), "alice@example.test", False, "x")
               for n in range(5)]
    assert replies == [None, None, None, None, BANNED]
    assert sleeps.delays == [1.0, 2.0, 3.0]  # the tarpit grows across the rotation too
    assert store.access.bans["2001:db8:1:2::/64"].kind == "failures"
    assert await hook.on_connect(facts("2001:db8:1:2:dead::beef")) == BANNED
    assert await hook.on_connect(facts("2001:db8:1:3::1")) is None  # the next /64 is somebody else


async def test_ipv6_spraying_from_rotating_addresses() -> None:
    hook, store, _, _ = make_hook()
    replies = [await hook.after_auth(facts(f"2001:db8:1:2::{n + 1}"), f"user{n}@example.test", False, "x")
               for n in range(4)]
    assert replies[-1] == BANNED and store.access.bans["2001:db8:1:2::/64"].kind == "spraying"


async def test_ipv6_subnet_rule_uses_the_48() -> None:
    hook, store, _, _ = make_hook(bans={"subnet_failures": 3})
    for n in range(3):
        await hook.after_auth(facts(f"2001:db8:1:{n + 1:x}::1"), "", False, "x")
    assert store.access.bans["2001:db8:1::/48"].kind == "subnet"
    assert await hook.on_connect(facts("2001:db8:1:ff::9")) == BANNED


async def test_ipv6_new_connections_per_minute_count_the_64() -> None:
    hook, _, _, _ = make_hook(limits={"new_connections_per_minute": 3})
    for n in range(3):
        assert await hook.on_connect(facts(f"2001:db8::{n + 1}", session=f"s{n}")) is None
        await hook.on_disconnect(facts(session=f"s{n}"))
    assert await hook.on_connect(facts("2001:db8::99", session="s9")) is not None


async def test_ipv6_concurrency_per_64_and_per_48() -> None:
    hook, _, _, _ = make_hook(limits={"connections_per_ip": 2, "connections_per_subnet": 3})
    assert await hook.on_connect(facts("2001:db8:1:1::1", "a")) is None
    assert await hook.on_connect(facts("2001:db8:1:1::2", "b")) is None
    assert await hook.on_connect(facts("2001:db8:1:1::3", "c")) is not None  # same /64
    assert await hook.on_connect(facts("2001:db8:1:2::1", "d")) is None
    assert await hook.on_connect(facts("2001:db8:1:3::1", "e")) is not None  # same /48, 3 open
    assert await hook.on_connect(facts("2001:db8:2::1", "f")) is None


async def test_ipv4_mapped_peer_meets_a_ban_on_its_ipv4_address() -> None:
    hook, _, _, _ = make_hook()
    await fail_logins(hook, "192.0.2.5", "alice@example.test", 5)
    assert await hook.on_connect(facts("::ffff:192.0.2.5")) == BANNED


# an unknown peer, and rates that race ---------------------------------------------------------

async def test_unknown_peer_is_refused_politely(caplog: pytest.LogCaptureFixture) -> None:
    hook, _, _, _ = make_hook()
    reply = await hook.on_connect(facts("unknown", listener="smtp"))
    assert reply == PEER_UNKNOWN and (reply.code, reply.enhanced) == (421, "4.7.0")
    assert any('"access.unknown_peer"' in r.getMessage() for r in caplog.records)
    assert await hook.after_auth(facts("unknown"), "alice@example.test", False, "x") is None


async def test_two_sessions_at_the_message_limit_cannot_both_pass() -> None:
    hook, _, _, _ = make_hook(limits={"messages_per_hour": 1})
    first, second = facts(session="a", account="alice@example.test"), facts(session="b", account="alice@example.test")
    assert await hook.on_mail(first, None, MailParams()) is None
    refused = await hook.on_mail(second, None, MailParams())  # the first message is not sent yet
    assert refused is not None and refused.code == 451


class YieldingCounters(MemoryAccessStore):
    """Counter calls that let other tasks run in between, as a shared store's round trip does."""

    async def add_to_counter(self, key: str, window_start: int, amount: int) -> int:
        await asyncio.sleep(0)  # a yield to the loop, not a wait
        return await super().add_to_counter(key, window_start, amount)


async def test_concurrent_recipients_at_the_limit_cannot_both_pass() -> None:
    hook, store, _, _ = make_hook(limits={"recipients_per_hour": 1})
    store.access = YieldingCounters()
    alice, rcpt = facts(account="alice@example.test"), Address("b", "x.example")
    replies = await asyncio.gather(*(hook.on_rcpt(alice, "alice@example.test", rcpt, Resolution("remote"))
                                     for _ in range(2)))
    assert sorted(reply is None for reply in replies) == [False, True]


async def test_bans_that_cannot_be_read_make_auth_a_temporary_failure() -> None:
    hook, store, _, _ = make_hook()

    async def unreadable(*_args: object) -> list[Any]:
        raise OSError("database or disk is full")

    store.access.get_bans = unreadable  # type: ignore[method-assign]
    reply = await hook.before_auth(facts(), "PLAIN")
    assert reply is not None and (reply.code, reply.enhanced) == (454, "4.7.0")  # RFC 4954 6


async def test_failure_records_that_cannot_be_written_do_not_change_the_reply() -> None:
    hook, store, _, _ = make_hook()

    async def full(*_args: object) -> None:
        raise OSError("database or disk is full")

    store.access.record_failure = full  # type: ignore[method-assign]
    store.access.remember_source = full  # type: ignore[method-assign]
    assert await hook.after_auth(facts(), "alice@example.test", True, "ok") is None
    assert await hook.after_auth(facts(), "alice@example.test", False, "wrong password") is None


async def test_an_ipv6_slash_64_is_one_source_for_the_pool_and_for_the_owner_exemption() -> None:
    hook, _, _, _ = make_hook()
    assert hook.gate_for("2001:db8:1:2::1").source == hook.gate_for("2001:db8:1:2:ffff::9").source
    assert hook.gate_for("2001:db8:1:2::1").source != hook.gate_for("2001:db8:1:3::1").source
    await hook.after_auth(facts("2001:db8:1:2::1"), "alice@example.test", True, "ok")
    await hook.ban(BanDecision("2001:db8:1::/48", "subnet", "test"), "auto")
    same_host = await hook.gate_for("2001:db8:1:2::77").admit("alice@example.test")
    assert same_host.allowed and same_host.priority
    neighbour = await hook.gate_for("2001:db8:1:3::1").admit("alice@example.test")
    assert not neighbour.allowed  # the /48 ban holds for everybody else in it
