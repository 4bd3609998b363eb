"""Backoff with jitter, expiry and the one delay notice."""

from __future__ import annotations

from hardmail.delivery.retry import (
    RetryPolicy,
    base_delay,
    delay_notice_due,
    is_expired,
    next_attempt_at,
    retry_delay,
)

POLICY = RetryPolicy()


def test_the_first_retry_is_five_minutes_and_doubles_up_to_the_cap() -> None:
    assert [base_delay(POLICY, n) for n in range(1, 8)] == [300, 600, 1200, 2400, 4800, 9600, 14400]
    assert base_delay(POLICY, 10_000) == 14400  # no overflow for huge attempt counts


def test_jitter_spreads_by_the_configured_fraction() -> None:
    assert retry_delay(POLICY, 1, rng=lambda: 0.0) == 240.0
    assert retry_delay(POLICY, 1, rng=lambda: 0.5) == 300.0
    assert retry_delay(POLICY, 1, rng=lambda: 1.0) == 360.0
    assert next_attempt_at(POLICY, 1000.0, 2, rng=lambda: 0.5) == 1600.0


def test_messages_expire_after_five_days() -> None:
    assert not is_expired(POLICY, 0.0, 5 * 86400 - 1)
    assert is_expired(POLICY, 0.0, 5 * 86400)


def test_the_delay_notice_is_due_after_four_hours_once() -> None:
    assert not delay_notice_due(POLICY, 0.0, 4 * 3600 - 1, already_sent=False)
    assert delay_notice_due(POLICY, 0.0, 4 * 3600, already_sent=False)
    assert not delay_notice_due(POLICY, 0.0, 9 * 3600, already_sent=True)
    assert not delay_notice_due(RetryPolicy(delay_notice_after=0), 0.0, 9 * 3600, already_sent=False)
