"""The access store port: IP ranges, bans, failed-login counts, known login sources and
fixed-window counters, shared by every worker process (records and the Protocol backends implement).

Times are seconds since the epoch (floats), as the policy code in ``hardmail.policy`` uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hardmail.policy.access import IpRange
from hardmail.policy.bans import Ban, FailureStats


@dataclass(frozen=True, slots=True)
class AuthFailure:
    at: float
    ip: str
    subnet: str  # the /24 or /64 of ip, in CIDR form
    account: str  # the account tried, or the keyed label of a name that is none (never the raw name)


class AccessStore(Protocol):
    # IP ranges

    async def list_ranges(self) -> list[IpRange]:
        """Every stored range, by name."""
        ...

    async def add_range(self, ip_range: IpRange) -> None:
        """Raises AlreadyExists when a range of that name exists."""
        ...

    async def remove_range(self, name: str) -> None:
        """Raises NotFound."""
        ...

    # bans

    async def get_bans(self, subjects: Sequence[str]) -> list[Ban]:
        """The bans (active or expired) recorded for these subjects (addresses or CIDR subnets)."""
        ...

    async def list_bans(self) -> list[Ban]:
        """Every recorded ban, active or expired, newest first."""
        ...

    async def list_active_bans(self, now: float) -> list[Ban]:
        """The bans in force at ``now`` (ending after it), in no particular order: the running
        server's snapshot, loaded with one query."""
        ...

    async def put_ban(self, ban: Ban) -> None:
        """Create or replace the ban of ``ban.subject``."""
        ...

    async def remove_ban(self, subject: str) -> bool:
        """False when there was no ban on that subject."""
        ...

    # failed logins and known sources

    async def record_failure(self, failure: AuthFailure) -> None: ...

    async def failure_stats(self, ip: str, subnet: str, account: str, since: float) -> FailureStats:
        """Counts of failures at or after ``since``."""
        ...

    async def remember_source(self, account: str, ip: str, at: float) -> None:
        """Note a successful login of ``account`` from ``ip``."""
        ...

    async def is_known_source(self, account: str, ip: str) -> bool: ...

    async def has_logged_in_from(self, ip: str) -> bool:
        """Whether any account ever logged in successfully from ``ip`` (an address key)."""
        ...

    # fixed-window counters (connections per minute, messages per hour and per day)

    async def add_to_counter(self, key: str, window_start: int, amount: int) -> int:
        """Add ``amount`` (0 reads) to the counter of ``key`` in that window; the new value."""
        ...

    async def prune(self, before: float) -> int:
        """Forget failures and counter windows older than ``before``; how many rows went."""
        ...
