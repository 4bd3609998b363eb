"""``SqlSecurityStore``: the :class:`hardmail.store.ports_security.SecurityStore` on SQL.

Built by ``SqlStore.security`` on the store's engine. Audit runs are kept in ``audit_runs``; the
sign-in sources and notice preferences of an account in ``sign_in_sources`` and
``notice_preferences`` (removed with the account). The login-history feed reads
``login_history``, which the credential store writes. Recording a source is one
``INSERT ... ON CONFLICT DO NOTHING``: of two sessions signing in from a new address at once,
exactly one sees it as new (and sends the notice).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Executable, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.store.ports import NotFound
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.ports_security import AuditRun, FeedEvent
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables import accounts
from hardmail.store.sql.tables_credentials import login_history
from hardmail.store.sql.tables_security import audit_runs, notice_preferences, sign_in_sources

# settings row: the id of the last login-history row the notice feed has handled (missing: 0).
# Migration 0009 sets it to the newest id found, so that the history before it makes no notices.
FEED_CURSOR_KEY = "notices.feed_cursor"


def _audit_run(row: Any) -> AuditRun:
    return AuditRun(row.id, row.started_at, row.finished_at, row.target, row.trigger, row.score, row.worst,
                    row.findings_json)


def _login_event(row: Any) -> LoginEvent:
    return LoginEvent(row.at, row.account, row.kind, row.result, row.protocol, row.mechanism, row.client_ip,
                      row.tls_version, row.detail)


def _insert_ignoring(dialect_name: str, table: Any, row: dict[str, Any]) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING, in the dialect's spelling."""
    module = postgresql if dialect_name == "postgresql" else sqlite
    statement: Executable = module.insert(table).values(**row).on_conflict_do_nothing()
    return statement


def _upsert_preference(dialect_name: str, account: str, wanted: bool) -> Executable:
    module = postgresql if dialect_name == "postgresql" else sqlite
    statement = module.insert(notice_preferences).values(account=account, weekly_digest=wanted)
    upsert: Executable = statement.on_conflict_do_update(index_elements=["account"],
                                                         set_={"weekly_digest": wanted})
    return upsert


class SqlSecurityStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = for_writing(engine)

    def __repr__(self) -> str:
        return "SqlSecurityStore()"

    # audit runs

    async def save_audit_run(self, run: AuditRun) -> int:
        values = {"started_at": run.started_at, "finished_at": run.finished_at, "target": run.target,
                  "trigger": run.trigger, "score": run.score, "worst": run.worst,
                  "findings_json": run.findings_json}
        async with self._writer.begin() as conn:
            result = await conn.execute(insert(audit_runs).values(**values).returning(audit_runs.c.id))
            return int(result.scalar_one())

    async def list_audit_runs(self, limit: int = 30, target: str | None = None) -> list[AuditRun]:
        query = select(audit_runs).order_by(audit_runs.c.started_at.desc(), audit_runs.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(audit_runs.c.target == target)
        async with self._engine.connect() as conn:
            return [_audit_run(row) for row in await conn.execute(query)]

    async def get_audit_run(self, run_id: int) -> AuditRun | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(audit_runs).where(audit_runs.c.id == run_id))).first()
        return None if row is None else _audit_run(row)

    async def prune_audit_runs(self, keep: int) -> int:
        place = func.row_number().over(partition_by=audit_runs.c.target,
                                       order_by=(audit_runs.c.started_at.desc(), audit_runs.c.id.desc()))
        ranked = select(audit_runs.c.id, place.label("place")).subquery()
        older = select(ranked.c.id).where(ranked.c.place > max(keep, 0))
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(audit_runs).where(audit_runs.c.id.in_(older)))
        return int(result.rowcount or 0)

    # sign-in sources

    async def sign_in_sources(self, account: str) -> list[str]:
        query = select(sign_in_sources.c.ip).where(sign_in_sources.c.account == account).order_by(
            sign_in_sources.c.ip)
        async with self._engine.connect() as conn:
            return [str(ip) for ip in (await conn.execute(query)).scalars()]

    async def add_sign_in_source(self, account: str, ip: str, at: datetime) -> bool:
        """True when the pair is new; a known pair gets ``last_seen_at`` moved on. An account that
        does not exist (removed while it signed in) records nothing: False."""
        row = {"account": account, "ip": ip[:64], "first_seen_at": at, "last_seen_at": at}
        s = sign_in_sources.c
        try:
            async with self._writer.begin() as conn:
                added = await conn.execute(_insert_ignoring(conn.dialect.name, sign_in_sources, row))
                if added.rowcount:
                    return True
                await conn.execute(update(sign_in_sources)
                                   .where(and_(s.account == account, s.ip == row["ip"], s.last_seen_at < at))
                                   .values(last_seen_at=at))
        except IntegrityError:  # no such account (the foreign key)
            return False
        return False

    async def prune_sign_in_sources(self, before: datetime) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(sign_in_sources).where(sign_in_sources.c.last_seen_at < before))
        return int(result.rowcount or 0)

    # notice preferences

    async def set_weekly_digest(self, account: str, wanted: bool) -> None:
        try:
            async with self._writer.begin() as conn:
                await self._require_account(conn, account)
                await conn.execute(_upsert_preference(conn.dialect.name, account, wanted))
        except IntegrityError:  # removed between the check and the write
            raise NotFound(f"account {account} not found") from None

    async def _require_account(self, conn: AsyncConnection, account: str) -> None:
        if await conn.scalar(select(accounts.c.address).where(accounts.c.address == account)) is None:
            raise NotFound(f"account {account} not found")

    async def weekly_digest_accounts(self) -> list[str]:
        query = (select(notice_preferences.c.account).where(notice_preferences.c.weekly_digest.is_(True))
                 .order_by(notice_preferences.c.account))
        async with self._engine.connect() as conn:
            return [str(account) for account in (await conn.execute(query)).scalars()]

    # login-history feed

    async def latest_login_event_id(self) -> int:
        async with self._engine.connect() as conn:
            newest = await conn.scalar(select(func.max(login_history.c.id)))
        return int(newest or 0)

    async def login_events_after(self, after_id: int, limit: int = 500) -> list[FeedEvent]:
        query = select(login_history).where(login_history.c.id > after_id).order_by(login_history.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [FeedEvent(row.id, _login_event(row)) for row in await conn.execute(query)]

    async def login_events_between(self, account: str, start: datetime, end: datetime) -> list[LoginEvent]:
        h = login_history.c
        query = (select(login_history).where(and_(h.account == account, h.at >= start, h.at < end))
                 .order_by(h.at, h.id))
        async with self._engine.connect() as conn:
            return [_login_event(row) for row in await conn.execute(query)]

    async def last_successful_logins(self) -> dict[str, datetime]:
        h = login_history.c
        query = (select(h.account, func.max(h.at)).where(and_(h.kind == "login", h.result == "success"))
                 .group_by(h.account))
        async with self._engine.connect() as conn:
            return {str(account): at for account, at in await conn.execute(query)}
