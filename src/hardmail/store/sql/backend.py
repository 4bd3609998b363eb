"""``SqlStore``: the :class:`hardmail.store.ports.Store` on SQLAlchemy 2 async (SQLite, PostgreSQL).

Each method is one transaction. Keys arrive already normalised and are stored as given. Integrity
errors the database raises (two writers racing) are turned into the same port errors that the
checks before each write raise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.core.clock import Clock, SystemClock
from hardmail.store.ports import (
    CHANGE_DISABLED,
    CHANGE_ENABLED,
    CHANGE_FROZEN,
    CHANGE_PASSWORD,
    CHANGE_REMOVED,
    CHANGE_UNFROZEN,
    Account,
    AccountChange,
    Alias,
    AlreadyExists,
    Domain,
    InUse,
    NotFound,
    Unavailable,
)
from hardmail.store.sql import changes
from hardmail.store.sql import migrate as migrations
from hardmail.store.sql.access_backend import SqlAccessStore
from hardmail.store.sql.credentials_backend import SqlCredentialStore
from hardmail.store.sql.engine import describe_url, for_writing
from hardmail.store.sql.mailbox_backend import SqlMailboxIndex
from hardmail.store.sql.msgauth_backend import SqlGreylistStore
from hardmail.store.sql.queue_backend import SqlQueueStore
from hardmail.store.sql.security_backend import SqlSecurityStore
from hardmail.store.sql.tables import accounts, addresses, alias_targets, aliases, domains, settings

_ACCOUNT_COLUMNS = (
    accounts.c.address,
    accounts.c.password_hash,
    accounts.c.enabled,
    accounts.c.display_name,
    addresses.c.created_at,
    accounts.c.frozen,
    accounts.c.frozen_reason,
)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


_PLURALS = {"account": "accounts", "alias": "aliases"}


def _count_of(count: int, kind: str) -> str:
    return f"{count} {kind if count == 1 else _PLURALS[kind]}"


class SqlStore:
    """The SQL storage backend; build it with :func:`hardmail.store.open_store`."""

    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._writer = for_writing(engine)  # SQLite: BEGIN IMMEDIATE for transactions that write
        self._clock = clock or SystemClock()
        self._queue: SqlQueueStore | None = None
        self._credentials: SqlCredentialStore | None = None
        self._msgauth: SqlGreylistStore | None = None
        self._access: SqlAccessStore | None = None
        self._mailbox: SqlMailboxIndex | None = None
        self._security: SqlSecurityStore | None = None

    def __repr__(self) -> str:
        return f"SqlStore({describe_url(str(self._engine.url))!r})"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def queue(self) -> SqlQueueStore:
        if self._queue is None:
            self._queue = SqlQueueStore(self._engine)
        return self._queue

    @property
    def msgauth(self) -> SqlGreylistStore:
        if self._msgauth is None:
            self._msgauth = SqlGreylistStore(self._engine)
        return self._msgauth

    @property
    def credentials(self) -> SqlCredentialStore:
        if self._credentials is None:
            self._credentials = SqlCredentialStore(self._engine, self._clock)
        return self._credentials

    @property
    def access(self) -> SqlAccessStore:
        if self._access is None:
            self._access = SqlAccessStore(self._engine)
        return self._access

    @property
    def mailbox(self) -> SqlMailboxIndex:
        if self._mailbox is None:
            self._mailbox = SqlMailboxIndex(self._engine, self._clock)
        return self._mailbox

    @property
    def security(self) -> SqlSecurityStore:
        if self._security is None:
            self._security = SqlSecurityStore(self._engine)
        return self._security

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    # life-cycle

    async def migrate(self) -> None:
        """Create the schema of a new database, or check that an existing one is current (then
        only read: a read-only database file works; rows of the old branched history are
        rewritten as the one revision they amount to). Never upgrades an existing database:
        :class:`~hardmail.store.sql.migrate.SchemaUpgradeNeeded` (the server start and
        ``hardmail upgrade`` upgrade it, after a backup: :mod:`hardmail.ops.backup.upgrade`);
        a database written by a newer hardmail: ``SchemaTooNew``."""
        try:
            state = (await migrations.read_state(self._engine)).check()
            if state.needs_upgrade:
                raise migrations.upgrade_needed(state)
            if state.pending or state.needs_collapse:
                await migrations.upgrade_to_head(self._writer, existing=False)
        except (DBAPIError, OSError) as exc:
            raise Unavailable(self._unavailable_text(exc)) from exc

    async def schema_is_current(self) -> bool:
        """Whether no migration is pending (only reads); raises ``SchemaTooNew`` for a database
        of a newer hardmail, ``SchemaUnrecognised`` for rows that make no known state."""
        return not (await self.schema_state()).pending

    async def schema_state(self) -> migrations.SchemaState:
        """Where the schema stands (:func:`hardmail.store.sql.migrate.read_state`), checked."""
        try:
            return (await migrations.read_state(self._engine)).check()
        except (DBAPIError, OSError) as exc:
            raise Unavailable(self._unavailable_text(exc)) from exc

    def _unavailable_text(self, exc: BaseException) -> str:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        return f"cannot use the database {describe_url(str(self._engine.url))}: {first_line}"

    async def schema_version(self) -> str | None:
        """The revision of the linear history the database is at (None before the first migration)."""
        return await migrations.current_revision(self._engine)

    async def close(self) -> None:
        await self._engine.dispose()

    # domains

    async def add_domain(self, name: str) -> Domain:
        domain = Domain(name=name, enabled=True, created_at=self._now())
        try:
            async with self._writer.begin() as conn:
                if await self._domain_exists(conn, name):
                    raise AlreadyExists(f"domain {name} already exists")
                await conn.execute(
                    insert(domains).values(name=name, enabled=True, created_at=domain.created_at)
                )
        except IntegrityError:
            raise AlreadyExists(f"domain {name} already exists") from None
        return domain

    async def get_domain(self, name: str) -> Domain | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(domains).where(domains.c.name == name))).first()
        return None if row is None else Domain(row.name, row.enabled, row.created_at)

    async def list_domains(self) -> list[Domain]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(domains).order_by(domains.c.name))
            return [Domain(row.name, row.enabled, row.created_at) for row in rows]

    async def remove_domain(self, name: str) -> None:
        try:
            async with self._writer.begin() as conn:
                if not await self._domain_exists(conn, name):
                    raise NotFound(f"domain {name} not found")
                await self._refuse_if_domain_in_use(conn, name)
                await conn.execute(delete(domains).where(domains.c.name == name))
        except IntegrityError:
            raise InUse(f"domain {name} still has accounts or aliases") from None

    async def _domain_exists(self, conn: AsyncConnection, name: str) -> bool:
        found = await conn.scalar(select(domains.c.name).where(domains.c.name == name))
        return found is not None

    async def _refuse_if_domain_in_use(self, conn: AsyncConnection, name: str) -> None:
        query = (
            select(addresses.c.kind, func.count())
            .where(addresses.c.domain == name)
            .group_by(addresses.c.kind)
        )
        counts: dict[str, int] = {kind: count for kind, count in await conn.execute(query)}
        if counts:
            users = [
                _count_of(counts[kind], kind) for kind in ("account", "alias") if kind in counts
            ]
            raise InUse(f"domain {name} still has {' and '.join(users)}")

    # the shared address registry

    async def _claim_address(self, conn: AsyncConnection, address: str, kind: str) -> datetime:
        """Reserve ``address`` for an account or alias; raises NotFound or AlreadyExists."""
        domain = _domain_of(address)
        if not await self._domain_exists(conn, domain):
            raise NotFound(f"domain {domain} not found")
        existing = await conn.scalar(
            select(addresses.c.kind).where(addresses.c.address == address)
        )
        if existing is not None:
            raise AlreadyExists(f"{existing} {address} already exists")
        created_at = self._now()
        await conn.execute(
            insert(addresses).values(
                address=address, domain=domain, kind=kind, created_at=created_at
            )
        )
        return created_at

    async def _release_address(self, conn: AsyncConnection, address: str, kind: str) -> bool:
        result = await conn.execute(
            delete(addresses).where(and_(addresses.c.address == address, addresses.c.kind == kind))
        )
        return bool(result.rowcount)

    # accounts

    async def add_account(
        self, address: str, password_hash: str, display_name: str = ""
    ) -> Account:
        try:
            async with self._writer.begin() as conn:
                created_at = await self._claim_address(conn, address, "account")
                await conn.execute(
                    insert(accounts).values(
                        address=address,
                        password_hash=password_hash,
                        enabled=True,
                        display_name=display_name,
                        frozen=False,
                        frozen_reason="",
                    )
                )
        except IntegrityError:
            raise AlreadyExists(f"{address} already exists") from None
        return Account(address, password_hash, True, display_name, created_at)

    async def get_account(self, address: str) -> Account | None:
        found = await self._select_accounts(accounts.c.address == address)
        return found[0] if found else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            return await self._select_accounts(None)
        return await self._select_accounts(addresses.c.domain == domain)

    async def _select_accounts(self, condition: ColumnElement[bool] | None) -> list[Account]:
        query = select(*_ACCOUNT_COLUMNS).join(
            addresses, addresses.c.address == accounts.c.address
        )
        if condition is not None:
            query = query.where(condition)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(accounts.c.address))
            return [Account(*row) for row in rows]

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        await self._update_account(address, CHANGE_PASSWORD, password_hash=password_hash)

    async def set_account_enabled(self, address: str, enabled: bool) -> None:
        await self._update_account(
            address, CHANGE_ENABLED if enabled else CHANGE_DISABLED, enabled=enabled
        )

    async def set_account_frozen(self, address: str, frozen: bool, reason: str = "") -> None:
        kind = CHANGE_FROZEN if frozen else CHANGE_UNFROZEN
        await self._update_account(
            address, kind, frozen=frozen, frozen_reason=reason.strip() if frozen else ""
        )

    async def _update_account(self, address: str, change: str | None = None, **values: Any) -> None:
        """Update the row; ``change``: the account change recorded in the same transaction."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(accounts).where(accounts.c.address == address).values(**values)
            )
            if not result.rowcount:
                raise NotFound(f"account {address} not found")  # rolls back: nothing recorded
            if change is not None:
                await changes.record_change(conn, address, change, self._now())

    async def remove_account(self, address: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(delete(accounts).where(accounts.c.address == address))
            if not await self._release_address(conn, address, "account"):
                raise NotFound(f"account {address} not found")
            await changes.record_change(conn, address, CHANGE_REMOVED, self._now())

    # account changes: the cross-process signal (hardmail.server.sessions polls it)

    async def latest_account_change(self) -> int:
        return await changes.latest_change(self._engine)

    async def account_changes_since(self, after_id: int, limit: int = 1000) -> list[AccountChange]:
        return await changes.changes_since(self._engine, after_id, limit)

    async def prune_account_changes(self, before: datetime) -> int:
        return await changes.prune_changes(self._writer, before)

    # aliases

    async def add_alias(self, source: str, targets: tuple[str, ...]) -> Alias:
        try:
            async with self._writer.begin() as conn:
                await self._claim_address(conn, source, "alias")
                await conn.execute(insert(aliases).values(source=source, enabled=True))
                if targets:
                    await conn.execute(insert(alias_targets), _target_rows(source, targets))
        except IntegrityError:
            raise AlreadyExists(f"{source} already exists") from None
        return Alias(source, tuple(targets), True)

    async def get_alias(self, source: str) -> Alias | None:
        found = await self._select_aliases(aliases.c.source == source)
        return found[0] if found else None

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            return await self._select_aliases(None)
        return await self._select_aliases(addresses.c.domain == domain)

    async def aliases_targeting(self, address: str) -> list[Alias]:
        # The subquery uses ix_alias_targets_target; catch-alls (source "@domain") are left out.
        sources = select(alias_targets.c.source).where(alias_targets.c.target == address)
        return await self._select_aliases(
            and_(aliases.c.source.in_(sources), ~aliases.c.source.startswith("@"))
        )

    async def _select_aliases(self, condition: ColumnElement[bool] | None) -> list[Alias]:
        heads = select(aliases.c.source, aliases.c.enabled).join(
            addresses, addresses.c.address == aliases.c.source
        )
        targets = (
            select(alias_targets.c.source, alias_targets.c.target)
            .join(aliases, aliases.c.source == alias_targets.c.source)
            .join(addresses, addresses.c.address == aliases.c.source)
        )
        if condition is not None:
            heads, targets = heads.where(condition), targets.where(condition)
        async with self._engine.connect() as conn:
            head_rows = (await conn.execute(heads.order_by(aliases.c.source))).all()
            target_rows = (
                await conn.execute(
                    targets.order_by(alias_targets.c.source, alias_targets.c.position)
                )
            ).all()
        return _assemble_aliases(head_rows, target_rows)

    async def remove_alias(self, source: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(delete(alias_targets).where(alias_targets.c.source == source))
            await conn.execute(delete(aliases).where(aliases.c.source == source))
            if not await self._release_address(conn, source, "alias"):
                raise NotFound(f"alias {source} not found")

    # settings

    async def get_setting(self, key: str) -> str | None:
        async with self._engine.connect() as conn:
            value = await conn.scalar(select(settings.c.value).where(settings.c.key == key))
        return None if value is None else str(value)

    async def set_setting(self, key: str, value: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(_upsert_setting(conn.dialect.name, key, value))


def _upsert_setting(dialect_name: str, key: str, value: str) -> Executable:
    """INSERT ... ON CONFLICT (key) DO UPDATE, in the dialect's spelling."""
    if dialect_name == "postgresql":
        pg_statement = postgresql.insert(settings).values(key=key, value=value)
        return pg_statement.on_conflict_do_update(
            index_elements=[settings.c.key], set_={"value": pg_statement.excluded.value}
        )
    lite_statement = sqlite.insert(settings).values(key=key, value=value)
    return lite_statement.on_conflict_do_update(
        index_elements=[settings.c.key], set_={"value": lite_statement.excluded.value}
    )


def _target_rows(source: str, targets: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {"source": source, "position": position, "target": target}
        for position, target in enumerate(targets)
    ]


def _assemble_aliases(heads: Iterable[Any], targets: Iterable[Any]) -> list[Alias]:
    """Alias records from (source, enabled) rows and (source, target) rows in position order."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, target in targets:
        by_source[source].append(target)
    return [Alias(source, tuple(by_source[source]), enabled) for source, enabled in heads]
