"""Connection and rate limits: the checks and their temporary replies."""

from __future__ import annotations

import pytest

from hardmail.policy.ratelimit import (
    AccountUsage,
    LimitRules,
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
