"""The ``account_changes`` rows on SQL: written inside the transaction of the change they signal,
read by id by every server process, pruned by age.

Shared by :class:`hardmail.store.sql.backend.SqlStore` (disable, freeze, removal) and
:class:`hardmail.store.sql.credentials_backend.SqlCredentialStore` (password, app-password
revocation), so that each change and its signal commit (or roll back) together.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.store.ports import AccountChange
from hardmail.store.sql.tables import account_changes


async def record_change(
    conn: AsyncConnection, account: str, kind: str, at: datetime, credential_id: int | None = None
) -> None:
    """Add the signal to the open transaction ``conn``."""
    await conn.execute(
        insert(account_changes).values(account=account, kind=kind, at=at, credential_id=credential_id)
    )


async def latest_change(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.max(account_changes.c.id))) or 0)


async def changes_since(engine: AsyncEngine, after_id: int, limit: int) -> list[AccountChange]:
    query = (
        select(account_changes)
        .where(account_changes.c.id > after_id)
        .order_by(account_changes.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [AccountChange(row.id, row.account, row.kind, row.at, row.credential_id) for row in rows]


async def prune_changes(writer: AsyncEngine, before: datetime) -> int:
    async with writer.begin() as conn:
        result = await conn.execute(delete(account_changes).where(account_changes.c.at < before))
    return int(result.rowcount or 0)
