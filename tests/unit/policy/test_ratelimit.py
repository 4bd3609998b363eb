"""Connection and rate limits: the checks and their temporary replies."""

from __future__ import annotations

import pytest

from hardmail.policy.ratelimit import (
    AccountUsage,
    LimitRules,
    NewConnectionCounter,
    concurrency_verdict,
    message_verdict,
    new_connection_verdict,
    recipient_verdict,
    window_start,
)

RULES = LimitRules(connections_per_ip=2, connections_per_subnet=3, new_connections_per_minute=5,
                   messages_per_hour=10, messages_per_day=20, recipients_per_hour=30, recipients_per_day=40)


@pytest.mark.parametrize(("ip_open", "subnet_open", "refused"), [(0, 0, False), (1, 2, False), (2, 2, True),
                                                                 (1, 3, True)])
def test_concurrency(ip_open: int, subnet_open: int, refused: bool) -> None:
    verdict = concurrency_verdict(ip_open, subnet_open, RULES)
    assert (verdict is not None) is refused
    if verdict is not None:
        assert (verdict.reply.code, verdict.reply.enhanced) == (421, "4.7.0")


@pytest.mark.parametrize(("count", "refused"), [(1, False), (5, False), (6, True)])
def test_new_connections_per_minute(count: int, refused: bool) -> None:
    assert (new_connection_verdict(count, RULES) is not None) is refused


@pytest.mark.parametrize(
    ("usage", "refused"),
    [(AccountUsage(messages_hour=9, messages_day=19), False), (AccountUsage(messages_hour=10), True),
     (AccountUsage(messages_hour=1, messages_day=20), True)],
)
def test_messages_per_hour_and_day(usage: AccountUsage, refused: bool) -> None:
    verdict = message_verdict(usage, RULES)
    assert (verdict is not None) is refused
    if verdict is not None:
        assert verdict.reply.code == 451 and verdict.reply.enhanced == "4.7.1"


@pytest.mark.parametrize(
    ("usage", "refused"),
    [(AccountUsage(recipients_hour=29, recipients_day=39), False), (AccountUsage(recipients_hour=30), True),
     (AccountUsage(recipients_day=40), True)],
)
def test_recipients_per_hour_and_day(usage: AccountUsage, refused: bool) -> None:
    assert (recipient_verdict(usage, RULES) is not None) is refused


def test_defaults_follow_mox_for_messages_per_day() -> None:
    assert LimitRules().messages_per_day == 1000


def test_fixed_windows() -> None:
    assert window_start(3599.9, 3600) == 0
    assert window_start(3600.0, 3600) == 3600


# new connections per minute, counted in memory -----------------------------------------------

def test_new_connection_counter_counts_per_address_and_forgets_the_old_minute() -> None:
    counter = NewConnectionCounter()
    assert [counter.add("192.0.2.1", "192.0.2.0/24", 60.0 + n) for n in range(3)] == [1, 2, 3]
    assert counter.add("192.0.2.2", "192.0.2.0/24", 100.0) == 1  # a neighbour has its own count
    assert counter.add("192.0.2.1", "192.0.2.0/24", 120.0) == 1  # the next minute starts again
    assert len(counter) == 1  # the old minute's sources are gone


def test_new_connection_counter_stays_bounded_under_a_flood_of_sources() -> None:
    counter = NewConnectionCounter(max_keys=3)
    for n in range(3):
        assert counter.add(f"192.0.2.{n}", "192.0.2.0/24", 0.0) == 1
    # the address part is full: further addresses are counted per subnet, which is stricter
    assert counter.add("192.0.2.9", "192.0.2.0/24", 1.0) == 1
    assert counter.add("192.0.2.10", "192.0.2.0/24", 1.0) == 2
    assert counter.add("192.0.2.1", "192.0.2.0/24", 1.0) == 2  # a counted address keeps its own count
    for n in range(2):
        assert counter.add(f"198.51.{n}.1", f"198.51.{n}.0/24", 2.0) == 1
    assert len(counter) == 6
    # both parts full: a further source finds no room (and is refused) until the minute ends
    for n in range(1000):
        assert counter.add(f"203.0.{n // 256}.{n % 256}", f"203.0.{n // 256}.0/24", 3.0) is None
    assert len(counter) == 6
    assert counter.add("203.0.0.1", "203.0.0.0/24", 60.0) == 1 and len(counter) == 1


def test_a_full_counter_refuses_with_a_temporary_reply() -> None:
    verdict = new_connection_verdict(None, RULES)
    assert verdict is not None and (verdict.reply.code, verdict.reply.enhanced) == (421, "4.7.0")
