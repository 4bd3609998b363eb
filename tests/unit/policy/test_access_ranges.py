"""IP ranges: matching (priority, width, expiry, families) and the relay matrix at RCPT."""

from __future__ import annotations

import pytest

from hardmail.policy.access import (
    DEFAULT_RANGES,
    Direction,
    IpRange,
    RangeError,
    RangeMatcher,
    bounds_of,
    connection_allowed,
    effective_ranges,
    in_parsed_networks,
    matching_range,
    next_expiry,
    parse_networks,
)
from hardmail.policy.relay import ClientFacts, RelayRules, rcpt_verdict

NOW = 1_700_000_000.0
OFFICE = IpRange("Office", 20, "10.1.0.0", "10.1.255.255", auth_required=frozenset())
BLOCKED = IpRange("Blocked", 30, "10.1.2.0", "10.1.2.255", protocols=frozenset({"imap"}))
TEMP = IpRange("Temp", 40, "10.1.2.3", "10.1.2.3", expires_at=NOW - 1)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.9", "Internet"),
        ("2001:db8::1", "Internet (IPv6)"),
        ("127.0.0.1", "My computer"),
        ("127.0.0.5", "My computer"),
        ("::1", "My computer (IPv6)"),
        ("::ffff:127.0.0.1", "My computer"),
        ("10.1.9.9", "Office"),
        ("10.1.2.4", "Blocked"),
        ("10.1.2.3", "Blocked"),  # Temp has expired
    ],
)
def test_highest_priority_matching_range_wins(ip: str, expected: str) -> None:
    ranges = effective_ranges([OFFICE, BLOCKED, TEMP])
    found = matching_range(ranges, ip, NOW)
    assert found is not None and found.name == expected


def test_equal_priority_prefers_the_narrower_range() -> None:
    wide = IpRange("wide", 20, "10.0.0.0", "10.255.255.255")
    narrow = IpRange("narrow", 20, "10.1.0.0", "10.1.0.255")
    assert matching_range([wide, narrow], "10.1.0.7", NOW) == narrow


def test_a_stored_range_replaces_a_builtin_one_of_the_same_name() -> None:
    closed = IpRange("Internet", 10, "0.0.0.0", "255.255.255.255", protocols=frozenset())
    found = matching_range(effective_ranges([closed]), "198.51.100.1", NOW)
    assert found == closed and not connection_allowed(found, "smtp")


@pytest.mark.parametrize(("listener", "allowed"), [("smtp", False), ("submission", False), ("submissions", False)])
def test_connection_needs_the_protocol(listener: str, allowed: bool) -> None:
    assert connection_allowed(BLOCKED, listener) is allowed
    assert connection_allowed(OFFICE, listener) is True
    assert connection_allowed(None, listener) is False


@pytest.mark.parametrize(
    ("spec", "bounds"),
    [("10.0.0.0/8", ("10.0.0.0", "10.255.255.255")), ("192.0.2.1-192.0.2.9", ("192.0.2.1", "192.0.2.9")),
     ("2001:db8::/64", ("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")), ("192.0.2.7", ("192.0.2.7", "192.0.2.7"))],
)
def test_bounds_from_cidr_dash_or_address(spec: str, bounds: tuple[str, str]) -> None:
    assert bounds_of(spec) == bounds


@pytest.mark.parametrize(("lower", "upper"), [("10.0.0.9", "10.0.0.1"), ("10.0.0.1", "::1"), ("x", "10.0.0.1")])
def test_bad_ranges_are_refused(lower: str, upper: str) -> None:
    with pytest.raises(RangeError):
        IpRange("bad", 1, lower, upper)


def test_defaults_cover_both_families() -> None:
    assert {r.lower for r in DEFAULT_RANGES} >= {"0.0.0.0", "::"}


# the per-address memo of the winning range ---------------------------------------------------

def test_matcher_answers_like_matching_range_and_remembers() -> None:
    ranges = effective_ranges([OFFICE, BLOCKED])
    matcher = RangeMatcher(ranges)
    for ip in ("10.1.9.9", "10.1.2.4", "203.0.113.9", "::ffff:127.0.0.1", "not an address", "10.1.9.9"):
        assert matcher.match(ip, NOW) == matching_range(ranges, ip, NOW)
    assert len(matcher) == 5


def test_matcher_follows_a_range_that_expires() -> None:
    short = IpRange("Short", 40, "10.1.2.3", "10.1.2.3", expires_at=NOW + 60)
    matcher = RangeMatcher(effective_ranges([OFFICE, short]))
    assert next_expiry(matcher.ranges, NOW) == NOW + 60
    assert [getattr(matcher.match("10.1.2.3", NOW + t), "name", None) for t in (0, 59)] == ["Short", "Short"]
    found = matcher.match("10.1.2.3", NOW + 60)  # remembered before the expiry, answered after it
    assert found is not None and found.name == "Office"
    assert next_expiry(matcher.ranges, NOW + 60) == float("inf")


def test_matcher_memo_is_bounded() -> None:
    matcher = RangeMatcher(DEFAULT_RANGES, max_entries=100)
    for n in range(1000):
        assert matcher.match(f"198.51.{n // 256}.{n % 256}", NOW) is not None
        assert len(matcher) <= 100


def test_parsed_networks_match_like_the_relay_check() -> None:
    networks = parse_networks(["10.0.0.0/8", "2001:db8::1/64"])  # host bits allowed
    assert in_parsed_networks("10.1.2.3", networks) and in_parsed_networks("::ffff:10.1.2.3", networks)
    assert in_parsed_networks("2001:db8::99", networks)
    assert not in_parsed_networks("192.0.2.1", networks) and not in_parsed_networks("unknown", networks)
    assert not in_parsed_networks("10.1.2.3", parse_networks([]))


# The relay matrix, in its documented order: deliveries allowed -> AUTH required -> recipient known.

NO_EXTERNAL = IpRange("no-ext", 50, "192.0.2.0", "192.0.2.255",
                      deliveries=frozenset({Direction.LOCAL_LOCAL, Direction.EXTERNAL_LOCAL}),
                      auth_required=frozenset({Direction.LOCAL_LOCAL}))
INTERNET, INTERNET_V6 = DEFAULT_RANGES[0], DEFAULT_RANGES[1]


def _client(account: str | None = None) -> ClientFacts:
    return ClientFacts(ip="192.0.2.1", listener="smtp", tls=True, account=account)


@pytest.mark.parametrize(
    ("ip_range", "sender_local", "kind", "account", "trusted", "code"),
    [
        # default Internet range: today's behaviour
        (INTERNET, False, "local", None, False, 250),
        (INTERNET, False, "unknown", None, False, 550),
        (INTERNET, False, "disabled", None, False, 550),
        (INTERNET, False, "remote", None, False, 554),  # no open relay
        (INTERNET, True, "remote", None, False, 554),
        (INTERNET, True, "remote", "alice@example.test", False, 250),  # authenticated users relay
        (INTERNET, False, "remote", None, True, 250),  # relay.trusted_networks
        # like hMailServer's Internet range: mail claiming one of our domains to one of our users
        # needs AUTH (nobody may spoof our own domains to our users), in both families
        (INTERNET, True, "local", None, False, 530),
        (INTERNET_V6, True, "local", None, False, 530),
        (INTERNET, True, "unknown", None, False, 530),
        (INTERNET, True, "local", "alice@example.test", False, 250),
        (INTERNET, True, "local", None, True, 250),  # relay.trusted_networks
        # an office range that relays without AUTH
        (OFFICE, False, "remote", None, False, 250),
        # a range that may not deliver to external recipients, even authenticated
        (NO_EXTERNAL, True, "remote", "alice@example.test", False, 550),
        (NO_EXTERNAL, False, "remote", None, True, 550),
        # local-local needs AUTH there: 530 before the recipient is even looked at
        (NO_EXTERNAL, True, "unknown", None, False, 530),
        (NO_EXTERNAL, True, "local", "alice@example.test", False, 250),
        (NO_EXTERNAL, False, "local", None, False, 250),
        # no range known: relay still needs AUTH
        (None, False, "remote", None, False, 554),
        (None, False, "local", None, False, 250),
    ],
)
def test_relay_matrix(ip_range: IpRange | None, sender_local: bool, kind: str, account: str | None,
                      trusted: bool, code: int) -> None:
    verdict = rcpt_verdict(_client(account), kind, RelayRules(ip_range, sender_local, trusted))
    assert verdict.reply.code == code
    assert verdict.accept is (code == 250)
