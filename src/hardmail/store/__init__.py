"""Storage: the ports (``hardmail.store.ports``) and :func:`open_store`, which picks a backend.

The SQL backend is imported only when a store is opened, so importing the ports stays cheap and
free of database drivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hardmail.core.clock import Clock
    from hardmail.store.ports import Store


async def open_store(url: str, *, clock: Clock | None = None, read_only: bool = False) -> Store:
    """Open the store at a SQLAlchemy URL (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://``).

    It does not touch the schema: call ``await store.migrate()`` before use (idempotent; it only
    reads when the schema is current). ``read_only``: for commands that only read; an SQLite file
    is opened read-only (a user who may only read it can), and is never created.
    """
    from hardmail.store.sql.backend import SqlStore
    from hardmail.store.sql.engine import create_engine_for

    return SqlStore(create_engine_for(url, read_only=read_only), clock=clock)
