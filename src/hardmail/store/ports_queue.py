"""Storage interface of the outbound queue: queued messages with per-recipient state, and routes.

A queued message is a spool file (``hardmail.delivery.spool``) plus one :class:`QueueEntry` row.
Times are seconds since the epoch (``Clock.now()``). A runner *claims* due entries for a lease so
that two runners never deliver the same message at once; the claim ends with ``finish_attempt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

RecipientState = Literal["pending", "delivered", "failed", "expired"]
FINAL_STATES: tuple[RecipientState, ...] = ("delivered", "failed", "expired")
RouteTls = Literal["opportunistic", "starttls", "implicit", "none"]


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    address: str
    domain: str
    state: RecipientState = "pending"
    last_code: int | None = None
    last_text: str = ""
    remote_mta: str = ""  # host that gave the last reply (RFC 3464 2.3.5 Remote-MTA)
    updated_at: float | None = None
    notified: bool = False  # the sender got the notice for this final state (or needs none)
    notify: tuple[str, ...] = ()  # RFC 3461 4.1 NOTIFY: NEVER or SUCCESS/FAILURE/DELAY; () is the default
    orcpt: str = ""  # RFC 3461 4.2 ORCPT, "addr-type;address"

    @property
    def pending(self) -> bool:
        return self.state == "pending"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    queue_id: str
    sender: str  # "" is the null reverse-path (a bounce)
    recipients: tuple[QueueRecipient, ...]
    size: int
    origin_account: str | None
    created_at: float
    next_attempt_at: float
    attempts: int = 0
    last_error: str = ""
    held: bool = False
    delay_notified: bool = False
    claimed_by: str | None = None
    claimed_until: float | None = None
    ret: str = ""  # RFC 3461 4.3 RET: FULL or HDRS; "" is our default
    envid: str = ""  # RFC 3461 4.4 ENVID

    @property
    def pending(self) -> tuple[QueueRecipient, ...]:
        return tuple(r for r in self.recipients if r.pending)

    @property
    def is_finished(self) -> bool:
        return not self.pending

    def with_recipients(self, recipients: Sequence[QueueRecipient]) -> QueueEntry:
        return replace(self, recipients=tuple(recipients))


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    """The result of one delivery attempt for one recipient."""

    address: str
    state: RecipientState
    code: int | None = None
    text: str = ""
    remote_mta: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """Mail for domains matching ``pattern`` goes to ``host:port`` instead of the MX.

    ``pattern`` is a domain, ``*.domain`` (its subdomains) or ``*`` (everything: the smarthost).
    ``password_encrypted`` is a Fernet token made with the server key; never the password itself.
    """

    pattern: str
    host: str
    port: int = 25
    tls: RouteTls = "opportunistic"
    username: str = ""
    password_encrypted: str = field(default="", repr=False)
    created_at: float | None = None


class QueueStore(Protocol):
    async def add_queued(self, entry: QueueEntry) -> None:
        """Insert a new entry with its recipients; raises AlreadyExists for a known queue id."""
        ...

    async def get_queued(self, queue_id: str) -> QueueEntry | None: ...

    async def list_queued(self) -> list[QueueEntry]:
        """Every entry, oldest first."""
        ...

    async def count_queued(self) -> int:
        """How many entries the queue holds (held ones included)."""
        ...

    async def claim_due(self, now: float, owner: str, lease_until: float, limit: int) -> list[QueueEntry]:
        """Claim up to ``limit`` entries that are due, not held and not claimed by a live lease.

        Entries whose recipients are all final are included: the caller settles (removes) them.
        """
        ...

    async def record_outcomes(self, queue_id: str, outcomes: Sequence[RecipientOutcome], now: float,
                              owner: str | None = None) -> bool:
        """Store per-recipient results at once (a crash after this never repeats a delivery).

        With ``owner`` nothing is stored unless ``owner`` still holds the claim; returns whether it did.
        """
        ...

    async def finish_attempt(
        self, queue_id: str, *, next_attempt_at: float, last_error: str, delay_notified: bool,
        owner: str | None = None,
    ) -> bool:
        """Count one attempt, schedule the next one and release the claim (only ``owner``'s, when given)."""
        ...

    async def renew_claim(self, queue_ids: Sequence[str], owner: str, lease_until: float) -> set[str]:
        """Extend ``owner``'s claims on ``queue_ids`` to ``lease_until``; returns the ids still held."""
        ...

    async def mark_notified(self, queue_id: str, addresses: Sequence[str]) -> None:
        """Remember that the sender got the notice about these recipients' final state."""
        ...

    async def set_delay_notified(self, queue_id: str) -> None:
        """Remember that the delay notice went out, before it is sent (never twice)."""
        ...

    async def release_claims(self, owner: str) -> int:
        """Release every claim held by ``owner`` (a runner restarting); returns how many."""
        ...

    async def set_held(self, queue_id: str, held: bool) -> None:
        """Raises NotFound."""
        ...

    async def reschedule(self, queue_id: str | None, next_attempt_at: float) -> int:
        """Make one entry (or every entry when None) due at ``next_attempt_at``; returns how many."""
        ...

    async def remove_queued(self, queue_id: str) -> None:
        """Raises NotFound."""
        ...

    async def next_due_at(self) -> float | None:
        """The earliest next attempt among entries that are not held, or None."""
        ...

    async def set_route(self, route: Route) -> None:
        """Add or replace the route for ``route.pattern``."""
        ...

    async def list_routes(self) -> list[Route]: ...

    async def remove_route(self, pattern: str) -> None:
        """Raises NotFound."""
        ...
