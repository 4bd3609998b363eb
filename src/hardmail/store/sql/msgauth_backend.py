"""``SqlGreylistStore``: :class:`hardmail.store.ports_msgauth.GreylistStore` on SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, and_, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.policy.greylist import TripletState
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables_msgauth import greylist_networks, greylist_triplets


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _upsert(dialect: str, table: Any, key_column: str, row: dict[str, Any]) -> Executable:
    values = {k: v for k, v in row.items() if k != key_column}
    if dialect == "postgresql":
        return postgresql.insert(table).values(**row).on_conflict_do_update(index_elements=[key_column], set_=values)
    return sqlite.insert(table).values(**row).on_conflict_do_update(index_elements=[key_column], set_=values)


class SqlGreylistStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = for_writing(engine)

    async def get_triplet(self, key: str) -> TripletState | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(greylist_triplets).where(greylist_triplets.c.key == key))).first()
        if row is None:
            return None
        return TripletState(row.first_seen.timestamp(), row.last_seen.timestamp(), row.expires_at.timestamp(),
                            bool(row.confirmed), int(row.passes))

    async def save_triplet(self, key: str, network: str, state: TripletState) -> None:
        row = {"key": key, "network": network, "first_seen": _at(state.first_seen),
               "last_seen": _at(state.last_seen), "expires_at": _at(state.expires_at),
               "confirmed": state.confirmed, "passes": state.passes}
        async with self._writer.begin() as conn:
            await conn.execute(_upsert(self._engine.dialect.name, greylist_triplets, "key", row))

    async def count_confirmed(self, network: str, now: float) -> int:
        query = select(func.count()).select_from(greylist_triplets).where(and_(
            greylist_triplets.c.network == network, greylist_triplets.c.confirmed.is_(True),
            greylist_triplets.c.expires_at > _at(now)))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def whitelist_network(self, network: str, until: float) -> None:
        row = {"network": network, "whitelisted_until": _at(until)}
        async with self._writer.begin() as conn:
            await conn.execute(_upsert(self._engine.dialect.name, greylist_networks, "network", row))

    async def network_whitelisted(self, network: str, now: float) -> bool:
        query = select(greylist_networks.c.network).where(and_(
            greylist_networks.c.network == network, greylist_networks.c.whitelisted_until > _at(now)))
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def purge_expired(self, now: float) -> int:
        async with self._writer.begin() as conn:
            triplets = await conn.execute(delete(greylist_triplets).where(greylist_triplets.c.expires_at <= _at(now)))
            networks = await conn.execute(
                delete(greylist_networks).where(greylist_networks.c.whitelisted_until <= _at(now)))
        return int(triplets.rowcount or 0) + int(networks.rowcount or 0)
