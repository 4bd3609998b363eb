"""``SqlQueueStore``: :class:`hardmail.store.ports_queue.QueueStore` on SQLAlchemy 2 async.

One transaction per method. Claims are taken row by row with a conditional UPDATE, so two runners
racing for the same entry cannot both win it (on SQLite writers are serialised anyway; on PostgreSQL
the candidates are selected ``FOR UPDATE SKIP LOCKED`` so racing runners pick different rows).
Outcomes and the end of an attempt are stored only while the caller still holds the claim.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.store.ports import AlreadyExists, NotFound
from hardmail.store.ports_queue import QueueEntry, QueueRecipient, RecipientOutcome, Route
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables_queue import queue_messages, queue_recipients, queue_routes

_RECIPIENT_COLUMNS = (
    queue_recipients.c.queue_id, queue_recipients.c.address, queue_recipients.c.domain,
    queue_recipients.c.state, queue_recipients.c.last_code, queue_recipients.c.last_text,
    queue_recipients.c.remote_mta, queue_recipients.c.updated_at, queue_recipients.c.notified,
    queue_recipients.c.notify, queue_recipients.c.orcpt,
)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


class SqlQueueStore:
    """The queue tables; built by ``SqlStore.queue`` on the store's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = for_writing(engine)

    # entries

    async def add_queued(self, entry: QueueEntry) -> None:
        try:
            async with self._writer.begin() as conn:
                await conn.execute(insert(queue_messages).values(**_message_row(entry)))
                await conn.execute(insert(queue_recipients), _recipient_rows(entry))
        except IntegrityError:
            raise AlreadyExists(f"queue id {entry.queue_id} is already queued") from None

    async def get_queued(self, queue_id: str) -> QueueEntry | None:
        found = await self._select(queue_messages.c.queue_id == queue_id)
        return found[0] if found else None

    async def list_queued(self) -> list[QueueEntry]:
        return await self._select(None)

    async def count_queued(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(queue_messages)) or 0)

    async def _select(self, condition: Any, conn: AsyncConnection | None = None) -> list[QueueEntry]:
        if conn is None:
            async with self._engine.connect() as own:
                return await self._select(condition, own)
        query = select(queue_messages).order_by(queue_messages.c.created_at, queue_messages.c.queue_id)
        if condition is not None:
            query = query.where(condition)
        heads = list(await conn.execute(query))
        if not heads:
            return []
        ids = [row.queue_id for row in heads]
        rcpt_query = (select(*_RECIPIENT_COLUMNS).where(queue_recipients.c.queue_id.in_(ids))
                      .order_by(queue_recipients.c.queue_id, queue_recipients.c.position))
        return _assemble(heads, await conn.execute(rcpt_query))

    async def claim_due(self, now: float, owner: str, lease_until: float, limit: int) -> list[QueueEntry]:
        async with self._writer.begin() as conn:
            query = _due_query(now).limit(limit)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            candidates = await conn.scalars(query)
            claimed = [qid for qid in list(candidates) if await _claim_one(conn, qid, now, owner, lease_until)]
            if not claimed:
                return []
            return await self._select(queue_messages.c.queue_id.in_(claimed), conn)

    async def record_outcomes(self, queue_id: str, outcomes: Sequence[RecipientOutcome], now: float,
                              owner: str | None = None) -> bool:
        async with self._writer.begin() as conn:
            if owner is not None and not await _holds(conn, queue_id, owner):
                return False
            for outcome in outcomes:
                await conn.execute(
                    update(queue_recipients)
                    .where(and_(queue_recipients.c.queue_id == queue_id,
                                queue_recipients.c.address == outcome.address,
                                queue_recipients.c.state == "pending"))
                    .values(state=outcome.state, last_code=outcome.code, last_text=outcome.text[:2000],
                            remote_mta=outcome.remote_mta[:255], updated_at=_at(now))
                )
        return True

    async def finish_attempt(
        self, queue_id: str, *, next_attempt_at: float, last_error: str, delay_notified: bool,
        owner: str | None = None,
    ) -> bool:
        condition = queue_messages.c.queue_id == queue_id
        if owner is not None:
            condition = and_(condition, queue_messages.c.claimed_by == owner)
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(queue_messages).where(condition).values(
                    attempts=queue_messages.c.attempts + 1, next_attempt_at=_at(next_attempt_at),
                    last_error=last_error[:2000], delay_notified=delay_notified,
                    claimed_by=None, claimed_until=None,
                )
            )
        return bool(result.rowcount)

    async def renew_claim(self, queue_ids: Sequence[str], owner: str, lease_until: float) -> set[str]:
        if not queue_ids:
            return set()
        held = and_(queue_messages.c.queue_id.in_(list(queue_ids)), queue_messages.c.claimed_by == owner)
        async with self._writer.begin() as conn:
            await conn.execute(update(queue_messages).where(held).values(claimed_until=_at(lease_until)))
            return set(await conn.scalars(select(queue_messages.c.queue_id).where(held)))

    async def mark_notified(self, queue_id: str, addresses: Sequence[str]) -> None:
        if not addresses:
            return
        async with self._writer.begin() as conn:
            await conn.execute(
                update(queue_recipients)
                .where(and_(queue_recipients.c.queue_id == queue_id, queue_recipients.c.address.in_(list(addresses))))
                .values(notified=True)
            )

    async def set_delay_notified(self, queue_id: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(update(queue_messages).where(queue_messages.c.queue_id == queue_id)
                               .values(delay_notified=True))

    async def release_claims(self, owner: str) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(queue_messages).where(queue_messages.c.claimed_by == owner)
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount or 0)

    async def set_held(self, queue_id: str, held: bool) -> None:
        await self._update_one(queue_id, held=held)

    async def reschedule(self, queue_id: str | None, next_attempt_at: float) -> int:
        statement = update(queue_messages).values(next_attempt_at=_at(next_attempt_at))
        if queue_id is not None:
            statement = statement.where(queue_messages.c.queue_id == queue_id)
        async with self._writer.begin() as conn:
            result = await conn.execute(statement)
        return int(result.rowcount or 0)

    async def _update_one(self, queue_id: str, **values: Any) -> None:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(queue_messages).where(queue_messages.c.queue_id == queue_id).values(**values)
            )
        if not result.rowcount:
            raise NotFound(f"no queued message with queue id {queue_id}")

    async def remove_queued(self, queue_id: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(delete(queue_recipients).where(queue_recipients.c.queue_id == queue_id))
            result = await conn.execute(delete(queue_messages).where(queue_messages.c.queue_id == queue_id))
        if not result.rowcount:
            raise NotFound(f"no queued message with queue id {queue_id}")

    async def next_due_at(self) -> float | None:
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(func.min(queue_messages.c.next_attempt_at))
                .where(and_(queue_messages.c.held.is_(False), queue_messages.c.claimed_by.is_(None)))
            )
        if isinstance(value, str):  # SQLite returns an aggregate of a TypeDecorator column as text
            value = datetime.fromisoformat(value).replace(tzinfo=UTC)
        return _seconds(value)

    # routes

    async def set_route(self, route: Route) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(delete(queue_routes).where(queue_routes.c.pattern == route.pattern))
            await conn.execute(insert(queue_routes).values(
                pattern=route.pattern, host=route.host, port=route.port, tls=route.tls,
                username=route.username, password_encrypted=route.password_encrypted,
                created_at=_at(route.created_at or 0.0),
            ))

    async def list_routes(self) -> list[Route]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(queue_routes).order_by(queue_routes.c.pattern))
            return [Route(row.pattern, row.host, row.port, row.tls, row.username, row.password_encrypted,
                          _seconds(row.created_at)) for row in rows]

    async def remove_route(self, pattern: str) -> None:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(queue_routes).where(queue_routes.c.pattern == pattern))
        if not result.rowcount:
            raise NotFound(f"no route for {pattern}")


def _due_query(now: float) -> Any:
    # Entries without pending recipients are claimed too: a runner that crashed after storing the
    # last outcome left them for the next runner to settle (remove).
    return (
        select(queue_messages.c.queue_id)
        .where(and_(queue_messages.c.held.is_(False), queue_messages.c.next_attempt_at <= _at(now),
                    _unclaimed(now)))
        .order_by(queue_messages.c.next_attempt_at, queue_messages.c.queue_id)
    )


def _unclaimed(now: float) -> Any:
    return or_(queue_messages.c.claimed_until.is_(None), queue_messages.c.claimed_until < _at(now))


async def _holds(conn: AsyncConnection, queue_id: str, owner: str) -> bool:
    found = await conn.scalar(select(queue_messages.c.queue_id).where(
        and_(queue_messages.c.queue_id == queue_id, queue_messages.c.claimed_by == owner)))
    return found is not None


async def _claim_one(conn: AsyncConnection, queue_id: str, now: float, owner: str, lease_until: float) -> bool:
    result = await conn.execute(
        update(queue_messages)
        .where(and_(queue_messages.c.queue_id == queue_id, _unclaimed(now)))
        .values(claimed_by=owner, claimed_until=_at(lease_until))
    )
    return bool(result.rowcount)


def _message_row(entry: QueueEntry) -> dict[str, Any]:
    return {
        "queue_id": entry.queue_id, "sender": entry.sender, "size": entry.size,
        "origin_account": entry.origin_account, "created_at": _at(entry.created_at),
        "next_attempt_at": _at(entry.next_attempt_at), "attempts": entry.attempts,
        "last_error": entry.last_error, "held": entry.held, "delay_notified": entry.delay_notified,
        "claimed_by": entry.claimed_by,
        "claimed_until": None if entry.claimed_until is None else _at(entry.claimed_until),
        "ret": entry.ret[:8], "envid": entry.envid[:100],
    }


def _recipient_rows(entry: QueueEntry) -> list[dict[str, Any]]:
    return [
        {"queue_id": entry.queue_id, "position": position, "address": r.address, "domain": r.domain,
         "state": r.state, "last_code": r.last_code, "last_text": r.last_text, "remote_mta": r.remote_mta,
         "updated_at": None if r.updated_at is None else _at(r.updated_at), "notified": r.notified,
         "notify": ",".join(r.notify)[:40], "orcpt": r.orcpt[:500]}
        for position, r in enumerate(entry.recipients)
    ]


def _assemble(heads: Iterable[Any], recipient_rows: Iterable[Any]) -> list[QueueEntry]:
    by_id: dict[str, list[QueueRecipient]] = defaultdict(list)
    for row in recipient_rows:
        by_id[row.queue_id].append(QueueRecipient(
            row.address, row.domain, row.state, row.last_code, row.last_text, row.remote_mta,
            _seconds(row.updated_at), row.notified, tuple(n for n in row.notify.split(",") if n), row.orcpt,
        ))
    return [
        QueueEntry(
            queue_id=row.queue_id, sender=row.sender, recipients=tuple(by_id[row.queue_id]), size=row.size,
            origin_account=row.origin_account, created_at=row.created_at.timestamp(),
            next_attempt_at=row.next_attempt_at.timestamp(), attempts=row.attempts, last_error=row.last_error,
            held=row.held, delay_notified=row.delay_notified, claimed_by=row.claimed_by,
            claimed_until=_seconds(row.claimed_until), ret=row.ret, envid=row.envid,
        )
        for row in heads
    ]
