"""Creating the SQLAlchemy async engine for a database URL, with SQLite tuned for a mail server.

SQLite connections get write-ahead logging (readers never block the writer), enforced foreign
keys, ``synchronous=NORMAL`` (durable at each checkpoint, safe with WAL) and a busy timeout, on
every new connection; a file database keeps a pool of :data:`SQLITE_POOL_SIZE` connections open.
A new SQLite database file is created readable by its owner only, since it holds password hashes.
PostgreSQL URLs (``postgresql+asyncpg://``) are used unchanged.

A read-only engine (for commands that only read, possibly as a user who may only read the file)
opens an SQLite file with ``mode=ro`` and sets no pragma that writes; when that user could not
create the WAL index next to the file and no ``-wal`` file shows a process using the database,
it opens it ``immutable=1`` (SQLite then needs no lock and no index; nothing is writing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from hardmail.store.sql.write_turns import taking_turns

SQLITE_BUSY_TIMEOUT_MS = 5000
# Connections an SQLite file database keeps open (each is one aiosqlite thread). Larger than the
# sessions a busy server runs at once, so that a burst of queries does not open (and close again)
# an overflow connection, with its thread and its pragmas, per query.
SQLITE_POOL_SIZE = 32
SQLITE_MAX_OVERFLOW = 32
WRITE_OPTION = "hardmail_write"
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA synchronous=NORMAL",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
)
_READ_ONLY_PRAGMAS = ("PRAGMA foreign_keys=ON", f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def describe_url(url: str) -> str:
    """The URL as it may be shown to an admin or logged: the password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown by its scheme only
        return url.partition("://")[0] + "://…"


def sqlite_database_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for another database or an in-memory one (also an SQLite
    URI filename, ``file:...``)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database.startswith((":memory:", "file:")):
        return None
    return Path(database)


def create_engine_for(url: str, read_only: bool = False) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets its parent directory and its pragmas.
    ``read_only``: an SQLite file is opened read-only and never created (see the module text)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_pre_ping=True)
    database = parsed.database or ""
    if _is_memory(database):
        engine = create_async_engine(parsed, poolclass=StaticPool)
    elif read_only:
        engine = create_async_engine(_read_only_url(parsed.drivername, Path(database)))
    else:
        _prepare_sqlite_file(Path(database))
        engine = create_async_engine(parsed, pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW)
    _install_sqlite_hooks(engine, _READ_ONLY_PRAGMAS if read_only else _SQLITE_PRAGMAS)
    return engine


def _read_only_url(driver: str, path: Path) -> str:
    """An SQLite URI filename (RFC 8089 form, as SQLite takes it) that opens ``path`` read-only."""
    query = "mode=ro"
    wal = path.with_name(path.name + "-wal")
    if not os.access(path.parent, os.W_OK) and not wal.exists():
        query += "&immutable=1"  # the WAL index could not be created, and no process has the file open
    return f"{driver}:///file:{quote(str(path.absolute()))}?{query}&uri=true"


def _is_memory(database: str) -> bool:
    return database in ("", ":memory:") or database.startswith("file::memory:")


def _prepare_sqlite_file(path: Path) -> None:
    """Create the parent directory and, for a new database, an empty owner-only file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)  # SQLite treats an empty file as a new, empty database


def _install_sqlite_hooks(engine: AsyncEngine, pragmas: tuple[str, ...] = _SQLITE_PRAGMAS) -> None:
    # SQLAlchemy's documented recipe ("Serializable isolation / Savepoints / Transactional DDL"):
    # the sqlite3 module's own transaction handling does not BEGIN before DDL, so we emit BEGIN.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A write transaction takes the write lock at once (waiting up to busy_timeout): a
        # deferred one that read first could not wait for another writer and would fail.
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def for_writing(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, marked so that its transactions are write transactions; on
    SQLite the writers of this process also take turns (``hardmail.store.sql.write_turns``)."""
    if engine.dialect.name != "sqlite":
        return engine.execution_options(**{WRITE_OPTION: True})
    return taking_turns(engine, {WRITE_OPTION: True}, max_wait=SQLITE_BUSY_TIMEOUT_MS / 1000)

