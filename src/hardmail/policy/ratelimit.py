"""Connection and rate limits: pure checks over counts the caller gathered, and the in-memory
counter of new connections per minute.

Concurrency is counted per address (an IPv4 address, an IPv6 /64) and per subnet (IPv4 /24,
IPv6 /48). New connections per minute per address are counted in memory by
:class:`NewConnectionCounter` (one per server process: a store round trip per connection would
cost more than the connection). Messages and recipients per hour and per day per authenticated
account are counted in fixed windows (a counter per window start), which any shared store can keep.
Every refusal is temporary (4xx): the client may try again later.
"""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.core.replies import Reply
from hardmail.policy.verdict import Verdict

TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections from your address, try again later")
TOO_MANY_NEW_CONNECTIONS = Reply(421, "4.7.0", "Too many new connections from your address, try again later")
TOO_MANY_MESSAGES = Reply(451, "4.7.1", "Message rate limit reached for this account, try again later")
TOO_MANY_RECIPIENTS = Reply(451, "4.7.1", "Recipient rate limit reached for this account, try again later")

MINUTE = 60
HOUR = 3600
DAY = 86400
# Sources (addresses, then subnets) one NewConnectionCounter holds per minute: far above the
# distinct clients a busy server sees in a minute, and a few megabytes at most.
MAX_COUNTED_SOURCES = 50_000


@dataclass(frozen=True, slots=True)
class LimitRules:
    connections_per_ip: int = 20
    connections_per_subnet: int = 100
    new_connections_per_minute: int = 120
    messages_per_hour: int = 200
    messages_per_day: int = 1000
    recipients_per_hour: int = 1000
    recipients_per_day: int = 5000


@dataclass(frozen=True, slots=True)
class AccountUsage:
    """Counts in the current hour and day windows, before the message or recipient being judged."""

    messages_hour: int = 0
    messages_day: int = 0
    recipients_hour: int = 0
    recipients_day: int = 0


def window_start(now: float, window: int) -> int:
    """The start of the fixed window of ``window`` seconds that contains ``now``."""
    return int(now // window) * window


class NewConnectionCounter:
    """New connections per address in the current one-minute window, held in memory.

    Windows are fixed (see :func:`window_start`): when ``now`` leaves the current minute every
    count is dropped, so no more than one minute of sources is ever held. The table is bounded:
    at most ``max_keys`` addresses are counted one by one; an address arriving when that part
    is full is counted under its subnet instead (a coarser count, so a stricter one: a subnet's
    total is at least any of its addresses' counts). When ``max_keys`` subnets are counted too,
    a connection from a further subnet gets None (refused, temporarily) until the minute rolls
    over: only a flood of that many different sources within one minute gets there, the sources
    already counted are not affected, and the memory stays bounded either way.
    """

    def __init__(self, max_keys: int = MAX_COUNTED_SOURCES) -> None:
        self.max_keys = max_keys
        self._window: int | None = None
        self._addresses: dict[str, int] = {}
        self._subnets: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._addresses) + len(self._subnets)

    def __repr__(self) -> str:
        return f"NewConnectionCounter(addresses={len(self._addresses)}, subnets={len(self._subnets)})"

    def add(self, address: str, subnet: str, now: float) -> int | None:
        """Count one new connection from ``address`` (in ``subnet``) at ``now``: the count of this
        minute, this one included (its subnet's count when the address found no room); None when
        the table is full."""
        self._roll(now)
        if address in self._addresses or len(self._addresses) < self.max_keys:
            return _bump(self._addresses, address)
        if subnet in self._subnets or len(self._subnets) < self.max_keys:
            return _bump(self._subnets, subnet)
        return None

    def _roll(self, now: float) -> None:
        window = window_start(now, MINUTE)
        if window != self._window:  # a new minute (or the clock went back): forget the old one
            self._window = window
            self._addresses.clear()
            self._subnets.clear()


def _bump(counts: dict[str, int], key: str) -> int:
    counts[key] = counts.get(key, 0) + 1
    return counts[key]


def concurrency_verdict(ip_open: int, subnet_open: int, rules: LimitRules) -> Verdict | None:
    """``*_open``: connections already open, this one not included."""
    if ip_open >= rules.connections_per_ip:
        return Verdict.refuse(TOO_MANY_CONNECTIONS, f"{ip_open} connections open from this address")
    if subnet_open >= rules.connections_per_subnet:
        return Verdict.refuse(TOO_MANY_CONNECTIONS, f"{subnet_open} connections open from this subnet")
    return None


def new_connection_verdict(this_minute: int | None, rules: LimitRules) -> Verdict | None:
    """``this_minute``: new connections in the current minute, this one included; None when the
    source found no room in a full :class:`NewConnectionCounter` (refused until the minute ends)."""
    if this_minute is None:
        return Verdict.refuse(TOO_MANY_NEW_CONNECTIONS, "too many different sources this minute")
    if this_minute > rules.new_connections_per_minute:
        return Verdict.refuse(TOO_MANY_NEW_CONNECTIONS, f"{this_minute} new connections this minute")
    return None


def message_verdict(usage: AccountUsage, rules: LimitRules) -> Verdict | None:
    """Before a new message (at MAIL FROM) of an authenticated account."""
    if usage.messages_hour >= rules.messages_per_hour:
        return Verdict.refuse(TOO_MANY_MESSAGES, f"{usage.messages_hour} messages this hour")
    if usage.messages_day >= rules.messages_per_day:
        return Verdict.refuse(TOO_MANY_MESSAGES, f"{usage.messages_day} messages today")
    return None


def recipient_verdict(usage: AccountUsage, rules: LimitRules) -> Verdict | None:
    """Before one more recipient (at RCPT TO) of an authenticated account."""
    if usage.recipients_hour >= rules.recipients_per_hour:
        return Verdict.refuse(TOO_MANY_RECIPIENTS, f"{usage.recipients_hour} recipients this hour")
    if usage.recipients_day >= rules.recipients_per_day:
        return Verdict.refuse(TOO_MANY_RECIPIENTS, f"{usage.recipients_day} recipients today")
    return None
