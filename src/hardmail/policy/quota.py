"""The quota decision for mail to a local mailbox: usage, limits and the incoming size → verdict.

Pure: the caller (the SMTP quota hook at RCPT and at the end of DATA, local delivery) gathers the
mailbox's usage and limits from the mailbox store and asks here. A message is refused when storing
it would take the mailbox over either limit; at RCPT the size is what MAIL FROM's SIZE= declared
(RFC 1870 4, 0 when none was given), so a mailbox already at or over its limit refuses any mail
and one that still has room refuses a message declared too big for that room.

The reply (RFC 3463 3.3 X.2.2 "Mailbox full"): ``452 4.2.2`` (``[mailbox] over_quota = "defer"``,
the sender keeps the message and retries, RFC 5321 4.5.3.1.10 on 452 at RCPT) or ``552 5.2.2``
(``"bounce"``: the sender gives up and tells its user, RFC 5321 4.2.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from hardmail.core.replies import Reply
from hardmail.policy.verdict import Verdict

OverQuota = Literal["defer", "bounce"]

MAILBOX_FULL_DEFER = Reply(452, "4.2.2", "Mailbox full, try again later")
MAILBOX_FULL_BOUNCE = Reply(552, "5.2.2", "Mailbox full")
ROOM = Reply(250, "2.1.5", "Recipient OK")


class QuotaUsage(Protocol):
    """What the decision reads (``hardmail.mailbox.Quota`` has these fields)."""

    @property
    def storage_used(self) -> int: ...

    @property
    def storage_limit(self) -> int | None: ...

    @property
    def messages_used(self) -> int: ...

    @property
    def messages_limit(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """A plain :class:`QuotaUsage` (tests, callers that add up usage themselves)."""

    storage_used: int
    storage_limit: int | None
    messages_used: int
    messages_limit: int | None


def mailbox_full_reply(over_quota: OverQuota) -> Reply:
    return MAILBOX_FULL_BOUNCE if over_quota == "bounce" else MAILBOX_FULL_DEFER


def over_quota_reason(usage: QuotaUsage, size: int) -> str | None:
    """Why one more message of ``size`` bytes does not fit (for the log), or None when it does.
    A limit of None or 0 is no limit; a negative size counts as 0."""
    size = max(size, 0)
    storage_limit, messages_limit = usage.storage_limit, usage.messages_limit
    if storage_limit and (usage.storage_used >= storage_limit or usage.storage_used + size > storage_limit):
        if usage.storage_used >= storage_limit:
            return f"storage full ({usage.storage_used} of {storage_limit} bytes)"
        return f"message of {size} bytes does not fit ({usage.storage_used} of {storage_limit} bytes used)"
    if messages_limit and usage.messages_used + 1 > messages_limit:
        return f"message count full ({usage.messages_used} of {messages_limit})"
    return None


def quota_verdict(usage: QuotaUsage, size: int, over_quota: OverQuota) -> Verdict:
    """Accept when a message of ``size`` bytes fits within both limits; else the configured refusal."""
    reason = over_quota_reason(usage, size)
    if reason is None:
        return Verdict.ok(ROOM)
    return Verdict.refuse(mailbox_full_reply(over_quota), f"over quota: {reason}")
