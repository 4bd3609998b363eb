"""Test support: a small in-memory :class:`SecurityStore`, and a store that adds it to a real one
(for unit tests of the notice feed that do not need the SQL backend of the security store)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hardmail.store.ports import NotFound
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.ports_security import AuditRun, FeedEvent


@dataclass
class MemorySecurity:
    """Login history rows are added with :meth:`append`; ``accounts`` limits set_weekly_digest."""

    accounts: set[str] = field(default_factory=set)
    events: list[FeedEvent] = field(default_factory=list)
    sources: dict[tuple[str, str], datetime] = field(default_factory=dict)
    digest: set[str] = field(default_factory=set)
    runs: list[AuditRun] = field(default_factory=list)

    def append(self, event: LoginEvent) -> int:
        row = FeedEvent(len(self.events) + 1, event)
        self.events.append(row)
        return row.id

    async def save_audit_run(self, run: AuditRun) -> int:
        self.runs.append(run)
        return len(self.runs)

    async def list_audit_runs(self, limit: int = 30, target: str | None = None) -> list[AuditRun]:
        return [r for r in reversed(self.runs) if target is None or r.target == target][:limit]

    async def get_audit_run(self, run_id: int) -> AuditRun | None:
        return self.runs[run_id - 1] if 0 < run_id <= len(self.runs) else None

    async def prune_audit_runs(self, keep: int) -> int:
        return 0

    async def sign_in_sources(self, account: str) -> list[str]:
        return [ip for (owner, ip) in self.sources if owner == account]

    async def add_sign_in_source(self, account: str, ip: str, at: datetime) -> bool:
        first = (account, ip) not in self.sources
        self.sources[(account, ip)] = at
        return first

    async def prune_sign_in_sources(self, before: datetime) -> int:
        old = [key for key, at in self.sources.items() if at < before]
        for key in old:
            del self.sources[key]
        return len(old)

    async def set_weekly_digest(self, account: str, wanted: bool) -> None:
        if account not in self.accounts:
            raise NotFound(f"no account {account}")
        (self.digest.add if wanted else self.digest.discard)(account)

    async def weekly_digest_accounts(self) -> list[str]:
        return sorted(self.digest)

    async def latest_login_event_id(self) -> int:
        return len(self.events)

    async def login_events_after(self, after_id: int, limit: int = 500) -> list[FeedEvent]:
        return [row for row in self.events if row.id > after_id][:limit]

    async def login_events_between(self, account: str, start: datetime, end: datetime) -> list[LoginEvent]:
        return [row.event for row in self.events if row.event.account == account and start <= row.event.at < end]

    async def last_successful_logins(self) -> dict[str, datetime]:
        last: dict[str, datetime] = {}
        for row in self.events:
            if row.event.kind == "login" and row.event.result == "success":
                last[row.event.account] = row.event.at
        return last


class WithSecurity:
    """``inner`` (a real store) whose ``security`` is ``security``."""

    def __init__(self, inner: Any, security: MemorySecurity) -> None:
        self._inner = inner
        self.security = security

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
