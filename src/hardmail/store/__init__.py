"""Storage: the ports (``hardmail.store.ports``) and :func:`open_store`, which picks a backend.

The SQL backend is imported only when a store is opened, so importing the ports stays cheap and
free of database drivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hardmail.core.clock import Clock
    from hardmail.store.ports import Store


async def open_store(url: str, *, clock: Clock | None = None) -> Store:
    """Open the store at a SQLAlchemy URL (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://``).

    It does not touch the schema: call ``await store.migrate()`` before use (idempotent).
    """
    from hardmail.store.sql.backend import SqlStore
    from hardmail.store.sql.engine import create_engine_for

    return SqlStore(create_engine_for(url), clock=clock)
