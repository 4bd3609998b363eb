"""``SqlMailboxIndex``: :class:`hardmail.store.ports_mailbox.MailboxIndex` on SQLAlchemy 2 async."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.core.clock import Clock
from hardmail.store.sql.engine import for_writing


class SqlMailboxIndex:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._writer = for_writing(engine)
        self._clock = clock
