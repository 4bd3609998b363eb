"""The security store: audit runs, the source addresses each account has signed in from (for
new-sign-in notices), users' notice preferences, and the login-history feed the notices are made from.

Records are plain values; the SQL backend is :mod:`hardmail.store.sql.security_backend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from hardmail.store.ports_credentials import LoginEvent


@dataclass(frozen=True, slots=True)
class AuditRun:
    """One audit run, as kept in the database (``hardmail audit history``)."""

    id: int  # 0 before it is saved
    started_at: datetime
    finished_at: datetime
    target: str  # "own" for the server's own audit, else the --target list as given
    trigger: str  # "cli" or "scheduled"
    score: int
    worst: str  # the worst severity's name
    findings_json: str  # a JSON list of Finding.to_json() objects


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """A login-history row with its id, for the notice feed."""

    id: int
    event: LoginEvent


class SecurityStore(Protocol):
    # --- audit runs --------------------------------------------------------------------
    async def save_audit_run(self, run: AuditRun) -> int:
        """Store ``run`` (its ``id`` is ignored); returns the new id."""
        ...

    async def list_audit_runs(self, limit: int = 30, target: str | None = None) -> list[AuditRun]:
        """The newest runs first (of ``target`` only when given), at most ``limit``."""
        ...

    async def get_audit_run(self, run_id: int) -> AuditRun | None: ...

    async def prune_audit_runs(self, keep: int) -> int:
        """Keep the newest ``keep`` runs of each target; how many were deleted."""
        ...

    # --- sign-in sources (new-sign-in notices) -------------------------------------------
    async def sign_in_sources(self, account: str) -> list[str]:
        """Every source address ``account`` has signed in from (as recorded by :meth:`add_sign_in_source`)."""
        ...

    async def add_sign_in_source(self, account: str, ip: str, at: datetime) -> bool:
        """Record ``ip`` for ``account``; True when it was not recorded before (atomic: of two
        concurrent calls for the same pair exactly one returns True)."""
        ...

    async def prune_sign_in_sources(self, before: datetime) -> int:
        """Forget sources last recorded before ``before``; how many."""
        ...

    # --- notice preferences ----------------------------------------------------------------
    async def set_weekly_digest(self, account: str, wanted: bool) -> None:
        """Raises NotFound for an account that does not exist."""
        ...

    async def weekly_digest_accounts(self) -> list[str]:
        """The accounts that asked for the weekly digest."""
        ...

    # --- login-history feed -------------------------------------------------------------
    async def latest_login_event_id(self) -> int:
        """The id of the newest login-history row, 0 when there is none."""
        ...

    async def login_events_after(self, after_id: int, limit: int = 500) -> list[FeedEvent]:
        """Login-history rows with an id above ``after_id``, oldest first, at most ``limit``."""
        ...

    async def login_events_between(self, account: str, start: datetime, end: datetime) -> list[LoginEvent]:
        """``account``'s login-history rows with ``start <= at < end``, oldest first (the digest)."""
        ...

    async def last_successful_logins(self) -> dict[str, datetime]:
        """For each account that ever logged in successfully, when it last did."""
        ...
