"""Connection and rate limits: pure checks over counts the caller gathered.

Concurrency is counted per address (an IPv4 address, an IPv6 /64) and per subnet (IPv4 /24,
IPv6 /48); new connections per minute per address and messages and recipients per hour and per
day per authenticated account are counted in fixed windows (a counter per window start), which
any shared store can keep.
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

HOUR = 3600
DAY = 86400


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


def concurrency_verdict(ip_open: int, subnet_open: int, rules: LimitRules) -> Verdict | None:
    """``*_open``: connections already open, this one not included."""
    if ip_open >= rules.connections_per_ip:
        return Verdict.refuse(TOO_MANY_CONNECTIONS, f"{ip_open} connections open from this address")
    if subnet_open >= rules.connections_per_subnet:
        return Verdict.refuse(TOO_MANY_CONNECTIONS, f"{subnet_open} connections open from this subnet")
    return None


def new_connection_verdict(this_minute: int, rules: LimitRules) -> Verdict | None:
    """``this_minute``: new connections in the current minute, this one included."""
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
