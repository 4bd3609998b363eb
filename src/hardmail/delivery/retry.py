"""When to try a queued message again: exponential backoff with jitter, expiry and the delay notice.

Pure functions over the ``[queue]`` settings; the random source is injectable so tests are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from hardmail.config.schema import QueueSection

Random = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_retry: float = 300.0
    backoff_factor: float = 2.0
    max_retry_interval: float = 14400.0
    jitter: float = 0.2
    give_up_after: float = 432000.0
    delay_notice_after: float = 14400.0

    @classmethod
    def from_section(cls, section: QueueSection) -> RetryPolicy:
        return cls(section.first_retry, section.backoff_factor, section.max_retry_interval, section.jitter,
                   section.give_up_after, section.delay_notice_after)


def base_delay(policy: RetryPolicy, attempts_done: int) -> float:
    """The wait after ``attempts_done`` attempts (1 after the first), before jitter."""
    exponent = max(attempts_done, 1) - 1
    # min() first: a large exponent would overflow a float before the cap is applied.
    growth = policy.backoff_factor ** min(exponent, 64)
    return min(policy.first_retry * growth, policy.max_retry_interval)


def retry_delay(policy: RetryPolicy, attempts_done: int, rng: Random = random.random) -> float:
    """The base delay spread by plus or minus ``jitter`` of itself, so retries do not arrive in lock-step."""
    base = base_delay(policy, attempts_done)
    return base + (2.0 * rng() - 1.0) * policy.jitter * base


def next_attempt_at(policy: RetryPolicy, now: float, attempts_done: int, rng: Random = random.random) -> float:
    return now + retry_delay(policy, attempts_done, rng)


def expires_at(policy: RetryPolicy, created_at: float) -> float:
    return created_at + policy.give_up_after


def is_expired(policy: RetryPolicy, created_at: float, now: float) -> bool:
    return now >= expires_at(policy, created_at)


def delay_notice_due(policy: RetryPolicy, created_at: float, now: float, already_sent: bool) -> bool:
    """One "delayed" DSN (RFC 3464 2.3.3 Action: delayed) once the message has waited long enough."""
    if already_sent or policy.delay_notice_after <= 0:
        return False
    return now - created_at >= policy.delay_notice_after
