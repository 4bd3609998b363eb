"""``SqlAccessStore``: the :class:`hardmail.store.ports_access.AccessStore` on SQLAlchemy 2 async.

Built by ``SqlStore.access`` on the store's engine. A range's permissions are kept as one text of
comma-separated tokens (``smtp``, ``deliver:local-external``, ``auth:external-external``,
``tls-for-auth``, ...) so that a new permission needs no schema change. Counters are upserts
(``INSERT ... ON CONFLICT DO UPDATE``), atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.policy.access import Direction, IpRange
from hardmail.policy.bans import Ban, FailureStats
from hardmail.store.ports import AlreadyExists, NotFound
from hardmail.store.ports_access import AuthFailure
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables_access import (
    access_auth_failures,
    access_bans,
    access_counters,
    access_known_sources,
    access_ranges,
)


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def permissions_text(ip_range: IpRange) -> str:
    tokens = sorted(ip_range.protocols)
    tokens += sorted(f"deliver:{d.value}" for d in ip_range.deliveries)
    tokens += sorted(f"auth:{d.value}" for d in ip_range.auth_required)
    if ip_range.tls_for_auth:
        tokens.append("tls-for-auth")
    return ",".join(tokens)


def _directions(tokens: set[str], prefix: str) -> frozenset[Direction]:
    return frozenset(d for d in Direction if f"{prefix}:{d.value}" in tokens)


def _range(row: Any) -> IpRange:
    tokens = set(row.permissions.split(","))
    return IpRange(
        name=row.name, priority=row.priority, lower=row.lower_ip, upper=row.upper_ip,
        protocols=frozenset(t for t in tokens if t in ("smtp", "submission", "pop3", "imap")),
        deliveries=_directions(tokens, "deliver"), auth_required=_directions(tokens, "auth"),
        tls_for_auth="tls-for-auth" in tokens,
        expires_at=row.expires_at.timestamp() if row.expires_at is not None else None,
    )


def _ban(row: Any) -> Ban:
    return Ban(subject=row.subject, kind=row.kind, reason=row.reason, created_at=row.created_at.timestamp(),
               expires_at=row.expires_at.timestamp(), offences=row.offences, by_admin=row.by_admin)


def _upsert(dialect_name: str, table: Any, row: dict[str, Any], keys: list[str], update: dict[str, Any]) -> Executable:
    module = postgresql if dialect_name == "postgresql" else sqlite
    statement = module.insert(table).values(**row)
    upsert: Executable = statement.on_conflict_do_update(index_elements=keys, set_=update)
    return upsert


class SqlAccessStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = for_writing(engine)
        self._dialect = engine.dialect.name

    def __repr__(self) -> str:
        return "SqlAccessStore()"

    # IP ranges

    async def list_ranges(self) -> list[IpRange]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(access_ranges).order_by(access_ranges.c.name))
            return [_range(row) for row in rows]

    async def add_range(self, ip_range: IpRange) -> None:
        row = {"name": ip_range.name, "priority": ip_range.priority, "lower_ip": ip_range.lower,
               "upper_ip": ip_range.upper, "permissions": permissions_text(ip_range),
               "expires_at": _at(ip_range.expires_at)}
        try:
            async with self._writer.begin() as conn:
                await conn.execute(insert(access_ranges).values(**row))
        except IntegrityError:
            raise AlreadyExists(f"an IP range named {ip_range.name!r} already exists") from None

    async def remove_range(self, name: str) -> None:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(access_ranges).where(access_ranges.c.name == name))
        if result.rowcount == 0:
            raise NotFound(f"no IP range named {name!r}")

    # bans

    async def get_bans(self, subjects: Sequence[str]) -> list[Ban]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(access_bans).where(access_bans.c.subject.in_(list(subjects))))
            return [_ban(row) for row in rows]

    async def list_bans(self) -> list[Ban]:
        async with self._engine.connect() as conn:
            query = select(access_bans).order_by(access_bans.c.created_at.desc(), access_bans.c.subject)
            return [_ban(row) for row in await conn.execute(query)]

    async def list_active_bans(self, now: float) -> list[Ban]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(access_bans).where(access_bans.c.expires_at > _at(now)))
            return [_ban(row) for row in rows]

    async def put_ban(self, ban: Ban) -> None:
        values = {"kind": ban.kind, "reason": ban.reason, "created_at": _at(ban.created_at),
                  "expires_at": _at(ban.expires_at), "offences": ban.offences, "by_admin": ban.by_admin}
        statement = _upsert(self._dialect, access_bans, {"subject": ban.subject, **values}, ["subject"], values)
        async with self._writer.begin() as conn:
            await conn.execute(statement)

    async def remove_ban(self, subject: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(access_bans).where(access_bans.c.subject == subject))
        return bool(result.rowcount)

    # failed logins and known sources

    async def record_failure(self, failure: AuthFailure) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(insert(access_auth_failures).values(
                at=failure.at, ip=failure.ip, subnet=failure.subnet, account=failure.account))

    async def failure_stats(self, ip: str, subnet: str, account: str, since: float) -> FailureStats:
        f = access_auth_failures.c
        recent = f.at >= since
        query = select(
            select(func.count()).where(recent, f.ip == ip).scalar_subquery(),
            select(func.count()).where(recent, f.subnet == subnet).scalar_subquery(),
            select(func.count()).where(recent, f.ip == ip, f.account == account).scalar_subquery(),
            select(func.count(f.account.distinct())).where(recent, f.ip == ip, f.account != "").scalar_subquery(),
            select(func.count(f.ip.distinct())).where(recent, f.account == account, f.account != "")
            .scalar_subquery(),
            select(func.count(f.account.distinct())).where(recent, f.subnet == subnet, f.account != "")
            .scalar_subquery(),
            select(func.count(f.account.distinct())).where(recent, f.account != "").scalar_subquery(),
            select(func.count(f.ip.distinct())).where(recent).scalar_subquery(),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return FailureStats(ip_failures=row[0], subnet_failures=row[1], account_ip_failures=row[2],
                            accounts_from_ip=row[3], ips_for_account=row[4], accounts_from_subnet=row[5],
                            accounts_total=row[6], sources_total=row[7])

    async def remember_source(self, account: str, ip: str, at: float) -> None:
        row = {"account": account, "ip": ip, "last_success_at": at}
        statement = _upsert(self._dialect, access_known_sources, row, ["account", "ip"], {"last_success_at": at})
        async with self._writer.begin() as conn:
            await conn.execute(statement)

    async def is_known_source(self, account: str, ip: str) -> bool:
        k = access_known_sources.c
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(k.ip).where(k.account == account, k.ip == ip))
        return found is not None

    async def has_logged_in_from(self, ip: str) -> bool:
        k = access_known_sources.c
        async with self._engine.connect() as conn:
            found = await conn.scalar(select(k.ip).where(k.ip == ip).limit(1))
        return found is not None

    # counters

    async def add_to_counter(self, key: str, window_start: int, amount: int) -> int:
        c = access_counters.c
        if amount == 0:
            async with self._engine.connect() as conn:
                value = await conn.scalar(select(c.count).where(c.key == key, c.window_start == window_start))
            return int(value or 0)
        row = {"key": key, "window_start": window_start, "count": amount}
        statement = _upsert(self._dialect, access_counters, row, ["key", "window_start"],
                            {"count": access_counters.c.count + amount})
        async with self._writer.begin() as conn:
            await conn.execute(statement)
            value = await conn.scalar(select(c.count).where(c.key == key, c.window_start == window_start))
        return int(value or 0)

    async def prune(self, before: float) -> int:
        async with self._writer.begin() as conn:
            failures = await conn.execute(delete(access_auth_failures).where(access_auth_failures.c.at < before))
            counters = await conn.execute(delete(access_counters).where(access_counters.c.window_start < before))
        return int(failures.rowcount or 0) + int(counters.rowcount or 0)
