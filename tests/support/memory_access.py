"""An in-memory AccessStore (and the sliver of a Store the access hook reads), for unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hardmail.policy.access import IpRange
from hardmail.policy.bans import Ban, FailureStats
from hardmail.store.ports import AlreadyExists, Domain, NotFound
from hardmail.store.ports_access import AuthFailure


@dataclass
class MemoryAccessStore:
    ranges: dict[str, IpRange] = field(default_factory=dict)
    bans: dict[str, Ban] = field(default_factory=dict)
    failures: list[AuthFailure] = field(default_factory=list)
    known: dict[tuple[str, str], float] = field(default_factory=dict)
    counters: dict[tuple[str, int], int] = field(default_factory=dict)

    async def list_ranges(self) -> list[IpRange]:
        return [self.ranges[name] for name in sorted(self.ranges)]

    async def add_range(self, ip_range: IpRange) -> None:
        if ip_range.name in self.ranges:
            raise AlreadyExists(ip_range.name)
        self.ranges[ip_range.name] = ip_range

    async def remove_range(self, name: str) -> None:
        if self.ranges.pop(name, None) is None:
            raise NotFound(name)

    async def get_bans(self, subjects: Sequence[str]) -> list[Ban]:
        return [self.bans[s] for s in subjects if s in self.bans]

    async def list_bans(self) -> list[Ban]:
        return sorted(self.bans.values(), key=lambda b: -b.created_at)

    async def list_active_bans(self, now: float) -> list[Ban]:
        return [ban for ban in self.bans.values() if ban.active(now)]

    async def put_ban(self, ban: Ban) -> None:
        self.bans[ban.subject] = ban

    async def remove_ban(self, subject: str) -> bool:
        return self.bans.pop(subject, None) is not None

    async def record_failure(self, failure: AuthFailure) -> None:
        self.failures.append(failure)

    async def failure_stats(self, ip: str, subnet: str, account: str, since: float) -> FailureStats:
        recent = [f for f in self.failures if f.at >= since]
        return FailureStats(
            ip_failures=sum(f.ip == ip for f in recent),
            subnet_failures=sum(f.subnet == subnet for f in recent),
            account_ip_failures=sum(f.ip == ip and f.account == account for f in recent),
            accounts_from_ip=len({f.account for f in recent if f.ip == ip and f.account}),
            ips_for_account=len({f.ip for f in recent if account and f.account == account}),
            accounts_from_subnet=len({f.account for f in recent if f.subnet == subnet and f.account}),
            accounts_total=len({f.account for f in recent if f.account}),
            sources_total=len({f.ip for f in recent}),
        )

    async def remember_source(self, account: str, ip: str, at: float) -> None:
        self.known[(account, ip)] = at

    async def is_known_source(self, account: str, ip: str) -> bool:
        return (account, ip) in self.known

    async def has_logged_in_from(self, ip: str) -> bool:
        return any(known_ip == ip for _, known_ip in self.known)

    async def add_to_counter(self, key: str, window_start: int, amount: int) -> int:
        self.counters[(key, window_start)] = self.counters.get((key, window_start), 0) + amount
        return self.counters[(key, window_start)]

    async def prune(self, before: float) -> int:
        old = len(self.failures) + len(self.counters)
        self.failures = [f for f in self.failures if f.at >= before]
        self.counters = {k: v for k, v in self.counters.items() if k[1] >= before}
        return old - len(self.failures) - len(self.counters)


@dataclass
class MemoryStore:
    """What AccessHook reads from a Store: ``access`` and ``get_domain``."""

    access: MemoryAccessStore = field(default_factory=MemoryAccessStore)
    domains: set[str] = field(default_factory=set)

    async def get_domain(self, name: str) -> Domain | None:
        return Domain(name=name) if name in self.domains else None
