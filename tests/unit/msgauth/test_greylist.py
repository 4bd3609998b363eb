"""Greylisting decisions with a fake clock: defer, confirm after the delay, expire, bypass, auto-whitelist."""

from __future__ import annotations

from hardmail.core.clock import FakeClock
from hardmail.policy.greylist import (
    BypassFacts,
    GreylistSettings,
    bypass_reason,
    client_network,
    decide,
    make_triplet,
    network_earns_whitelist,
    sender_mark,
    sender_mark_state,
)

SETTINGS = GreylistSettings()


def test_networks_are_slash_24_and_slash_64() -> None:
    assert client_network("192.0.2.77", SETTINGS) == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3:4:5:6", SETTINGS) == "2001:db8:1:2::/64"
    assert client_network("::ffff:192.0.2.9", SETTINGS) == "192.0.2.0/24"
    same = make_triplet("192.0.2.1", "A@x.org", "b@y.org", SETTINGS)
    assert same == make_triplet("192.0.2.200", "a@x.org", "B@y.org", SETTINGS)


def test_first_attempt_deferred_retry_after_delay_passes() -> None:
    clock = FakeClock()
    first = decide(None, clock.now(), SETTINGS)
    assert first.action == "defer"
    clock.advance(60)
    early = decide(first.state, clock.now(), SETTINGS)
    assert early.action == "defer" and early.reason == "retried before the initial delay"
    clock.advance(241)
    retry = decide(early.state, clock.now(), SETTINGS)
    assert retry.action == "pass" and retry.newly_confirmed and retry.state.confirmed
    clock.advance(30 * 86400)
    again = decide(retry.state, clock.now(), SETTINGS)
    assert again.action == "pass" and not again.newly_confirmed and again.state.passes == 2


def test_unconfirmed_expires_after_a_day_confirmed_after_36_days() -> None:
    clock = FakeClock()
    first = decide(None, clock.now(), SETTINGS)
    clock.advance(86400)
    assert decide(first.state, clock.now(), SETTINGS).reason == "new triplet"
    clock.advance(400)
    confirmed = decide(decide(None, clock.now() - 400, SETTINGS).state, clock.now(), SETTINGS)
    assert confirmed.action == "pass"
    clock.advance(36 * 86400)
    assert decide(confirmed.state, clock.now(), SETTINGS).action == "defer"


def _facts(**changes: object) -> BypassFacts:
    base = {"ip": "198.51.100.7", "sender": "news@list.example", "recipient_domain": "example.test",
            "authenticated": False, "trusted": False, "spf_pass": False, "network_whitelisted": False}
    base.update(changes)
    return BypassFacts(**base)  # type: ignore[arg-type]


def test_bypass_reasons() -> None:
    assert bypass_reason(_facts(), [], True, [], []) is None
    assert bypass_reason(_facts(authenticated=True), [], True, [], []) == "authenticated client"
    assert bypass_reason(_facts(trusted=True), [], True, [], []) == "trusted network"
    assert bypass_reason(_facts(spf_pass=True), [], True, [], []) == "SPF pass"
    assert bypass_reason(_facts(spf_pass=True), [], False, [], []) is None
    assert bypass_reason(_facts(), ["NEWS@list.example"], True, [], []) == "whitelisted sender"
    assert bypass_reason(_facts(), ["list.example"], True, [], []) == "whitelisted sender domain"
    assert bypass_reason(_facts(), ["198.51.100.0/24"], True, [], []) == "whitelisted network"
    assert bypass_reason(_facts(), ["198.51.100.7"], True, [], []) == "whitelisted network"
    assert bypass_reason(_facts(network_whitelisted=True), [], True, [], []) == "network whitelisted automatically"
    assert bypass_reason(_facts(), [], True, [], ["example.test"]) == "greylisting off for the recipient domain"
    assert bypass_reason(_facts(), [], True, ["other.test"], []) == "greylisting not enabled for the recipient domain"
    assert bypass_reason(_facts(), [], True, ["example.test"], []) is None


def test_automatic_whitelisting_threshold() -> None:
    assert not network_earns_whitelist(2, SETTINGS)
    assert network_earns_whitelist(3, SETTINGS)
    assert not network_earns_whitelist(100, GreylistSettings(auto_whitelist_after=0))


def test_sender_marks_count_distinct_senders_of_a_network() -> None:
    triplet = make_triplet("192.0.2.1", "A@x.org", "b@y.org", SETTINGS)
    mark = sender_mark(triplet)
    assert mark == sender_mark(make_triplet("192.0.2.9", "a@x.org", "other@y.org", SETTINGS))  # same sender
    assert mark.network == "s:192.0.2.0/24" and mark.key != triplet.key
    assert mark != sender_mark(make_triplet("192.0.2.1", "c@x.org", "b@y.org", SETTINGS))
    state = sender_mark_state(1000.0, SETTINGS)
    assert state.confirmed and state.expires_at == 1000.0 + SETTINGS.confirmed_lifetime
