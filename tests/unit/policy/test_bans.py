"""Failure accounting and bans: thresholds, every rule evaluated (address and subnet alike),
spraying from one address and from one subnet, never-ban, escalation and expiry, the tarpit, scopes."""

from __future__ import annotations

import pytest

from hardmail.policy.bans import (
    Ban,
    BanDecision,
    BanIndex,
    BanRules,
    FailureStats,
    active_bans,
    address_key,
    ban_duration,
    ban_subjects,
    decide_bans,
    explain,
    new_ban,
    subnet_of,
    tarpit_delay,
)

RULES = BanRules()
IP = "198.51.100.7"
ACCOUNT = "alice@example.test"


def _kinds(stats: FailureStats, ip: str = IP, rules: BanRules = RULES) -> list[str]:
    return [decision.kind for decision in decide_bans(ip, stats, rules)]


@pytest.mark.parametrize(
    ("stats", "kinds"),
    [
        (FailureStats(ip_failures=1, accounts_from_ip=1, ips_for_account=1), []),
        (FailureStats(ip_failures=4, accounts_from_ip=1, ips_for_account=1), []),
        (FailureStats(ip_failures=5, accounts_from_ip=1, ips_for_account=1), ["failures"]),
        # spraying: one address, many accounts, few tries each
        (FailureStats(ip_failures=4, accounts_from_ip=4, ips_for_account=1), ["spraying"]),
        (FailureStats(ip_failures=3, accounts_from_ip=3, ips_for_account=1), []),
        # distributed guessing bans nobody (it raises the account's guard, see test_login_guard)
        (FailureStats(ip_failures=1, accounts_from_ip=1, ips_for_account=50), []),
        (FailureStats(ip_failures=1, subnet_failures=50), ["subnet"]),
        # spraying from rotating addresses of one subnet
        (FailureStats(ip_failures=1, accounts_from_ip=1, accounts_from_subnet=10), ["subnet-spraying"]),
        (FailureStats(ip_failures=1, accounts_from_ip=1, accounts_from_subnet=9), []),
    ],
)
def test_decisions(stats: FailureStats, kinds: list[str]) -> None:
    assert _kinds(stats) == kinds


def test_every_rule_is_evaluated_not_the_first_match() -> None:
    # the fifth failure of the 11th address of a /24 with 55 failures: an address AND a subnet ban
    stats = FailureStats(ip_failures=5, subnet_failures=55, accounts_from_ip=1, accounts_from_subnet=1)
    decisions = decide_bans(IP, stats, RULES)
    assert [(d.kind, d.subject) for d in decisions] == [("failures", IP), ("subnet", "198.51.100.0/24")]


def test_eleven_addresses_five_failures_each_make_a_subnet_ban() -> None:
    subnet_bans = []
    for n in range(1, 12):
        for k in range(1, 6):
            stats = FailureStats(ip_failures=k, subnet_failures=(n - 1) * 5 + k, accounts_from_ip=1)
            subnet_bans += [d for d in decide_bans(f"198.51.100.{n}", stats, RULES) if d.kind == "subnet"]
    assert subnet_bans and subnet_bans[0].subject == "198.51.100.0/24"


def test_subnet_ban_names_the_subnet() -> None:
    [decision] = decide_bans(IP, FailureStats(ip_failures=1, subnet_failures=99), RULES)
    assert decision.subject == "198.51.100.0/24"


def test_never_ban_list_wins_over_every_rule() -> None:
    rules = BanRules(never_ban=("198.51.100.0/24",))
    stats = FailureStats(ip_failures=99, subnet_failures=99, accounts_from_ip=99, ips_for_account=99,
                         accounts_from_subnet=99)
    assert decide_bans(IP, stats, rules) == []


def test_automatic_bans_refuse_auth_and_admin_bans_everything() -> None:
    assert Ban("192.0.2.1", "failures", "x", 0, 10).scope == "auth"
    assert Ban("192.0.2.0/24", "subnet-spraying", "x", 0, 10).scope == "auth"
    assert Ban("192.0.2.1", "admin", "x", 0, 10, by_admin=True).scope == "all"
    assert Ban("192.0.2.1", "smtp", "MX abuse", 0, 10).scope == "all"


@pytest.mark.parametrize(("ip", "key", "subnet"), [
    ("192.0.2.77", "192.0.2.77", "192.0.2.0/24"),
    ("2001:db8:1:2:3::4", "2001:db8:1:2::/64", "2001:db8:1::/48"),
    ("::ffff:192.0.2.1", "192.0.2.1", "192.0.2.0/24"),
])
def test_address_keys_and_subnets(ip: str, key: str, subnet: str) -> None:
    assert (address_key(ip), subnet_of(ip)) == (key, subnet)


def test_ipv6_rotation_inside_a_64_is_one_ban_subject() -> None:
    stats = FailureStats(ip_failures=5, accounts_from_ip=1, ips_for_account=1)
    [first] = decide_bans("2001:db8:1:2::1", stats, RULES)
    [rotated] = decide_bans("2001:db8:1:2:ffff::9", stats, RULES)
    assert first.subject == rotated.subject == "2001:db8:1:2::/64"
    assert first.subject in ban_subjects("2001:db8:1:2:abcd::1")


def test_ipv6_subnet_ban_covers_the_48() -> None:
    [decision] = decide_bans("2001:db8:1:2::1", FailureStats(ip_failures=1, subnet_failures=50), RULES)
    assert decision.subject == "2001:db8:1::/48"
    assert "2001:db8:1::/48" in ban_subjects("2001:db8:1:ff::7")


def test_ban_subjects_unmap_ipv4_mapped_addresses() -> None:
    assert ban_subjects("::ffff:192.0.2.5") == ("192.0.2.5", "192.0.2.0/24")
    assert ban_subjects("2001:db8::5") == ("2001:db8::5", "2001:db8::/64", "2001:db8::/48")


def test_never_ban_matches_an_ipv4_mapped_peer() -> None:
    rules = BanRules(never_ban=("192.0.2.0/24",))
    assert decide_bans("::ffff:192.0.2.5", FailureStats(ip_failures=99), rules) == []


@pytest.mark.parametrize(("offence", "seconds"), [(1, 3600), (2, 86400), (3, 604800), (4, 604800), (0, 3600)])
def test_escalation(offence: int, seconds: float) -> None:
    assert ban_duration(offence, RULES.durations) == seconds


DECISION = BanDecision(IP, "failures", "5 failed logins")


def test_repeat_offender_gets_longer_bans_and_is_forgiven_after_a_while() -> None:
    first = new_ban(DECISION, None, 1000.0, RULES)
    assert (first.offences, first.expires_at) == (1, 1000.0 + 3600)
    second = new_ban(DECISION, first, first.expires_at + 10, RULES)
    assert (second.offences, second.expires_at - second.created_at) == (2, 86400)
    much_later = second.expires_at + RULES.forget_after + 1
    assert new_ban(DECISION, second, much_later, RULES).offences == 1


def test_bans_expire() -> None:
    ban = Ban(IP, "failures", "x", created_at=0.0, expires_at=100.0)
    assert active_bans([ban], 99.0) == [ban]
    assert active_bans([ban], 100.0) == []


def test_tarpit_grows_and_is_capped() -> None:
    delays = [tarpit_delay(n, RULES) for n in range(0, 14)]
    assert delays[0] == 0 and delays[1] == 1.0 and delays[3] == 3.0
    assert delays == sorted(delays) and max(delays) == RULES.tarpit_max


def test_explain_says_active_expired_and_never_ban() -> None:
    rules = BanRules(never_ban=("198.51.100.0/24",))
    lines = explain(IP, [Ban(IP, "failures", "5 failed logins", 0.0, 50.0)], 100.0, rules)
    assert any("never-ban" in line for line in lines)
    assert any("expired failures ban" in line for line in lines)
    assert lines[-1] == f"{IP} is not banned"


# the in-memory index the server looks bans up in ----------------------------------------------

def test_ban_index_finds_the_longest_active_ban_on_any_subject() -> None:
    host = Ban("2001:db8:1:2::/64", "failures", "x", created_at=0.0, expires_at=100.0)
    site = Ban("2001:db8:1::/48", "subnet", "x", created_at=0.0, expires_at=200.0)
    index = BanIndex([host, site, Ban("192.0.2.7", "admin", "x", 0.0, 50.0, by_admin=True)])
    assert index.find("2001:db8:1:2::99", 10.0) == site
    assert index.find("2001:db8:1:3::1", 10.0) == site  # another /64 of the banned /48
    assert index.find("::ffff:192.0.2.7", 10.0) is not None  # an IPv4-mapped peer as its IPv4 address
    assert index.find("192.0.2.8", 10.0) is None
    assert index.find("unknown", 10.0) is None
    assert index.find("192.0.2.7", 50.0) is None  # ended while it was held


def test_ban_index_put_replaces_the_subjects_ban() -> None:
    index = BanIndex()
    assert index.find(IP, 0.0) is None
    index.put(Ban(IP, "failures", "x", 0.0, 10.0))
    index.put(Ban(IP, "failures", "again", 20.0, 30.0, offences=2))
    found = index.find(IP, 25.0)
    assert len(index) == 1 and found is not None and found.offences == 2
