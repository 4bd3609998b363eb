"""``SqlCredentialStore``: the :class:`hardmail.store.ports_credentials.CredentialStore` on SQL.

It shares the engine (and the SQLite write marking) of :class:`hardmail.store.sql.backend.SqlStore`;
a password change updates ``accounts.password_hash`` and ``account_credentials`` in one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, and_, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.auth.scram import ScramSecrets
from hardmail.core.clock import Clock, SystemClock
from hardmail.store.ports import (
    CHANGE_APP_PASSWORD_REVOKED,
    CHANGE_MUST_CHANGE,
    CHANGE_PASSWORD,
    CHANGE_TWO_FACTOR_ON,
    AlreadyExists,
    NotFound,
)
from hardmail.store.ports_credentials import AppPassword, CredentialState, LoginEvent
from hardmail.store.sql.changes import record_change
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables import accounts
from hardmail.store.sql.tables_credentials import (
    account_credentials,
    app_passwords,
    login_history,
    recovery_codes,
)


def _scram_or_none(text: str | None) -> ScramSecrets | None:
    if not text:
        return None
    try:
        return ScramSecrets.from_text(text)
    except ValueError:  # a damaged row: SCRAM fails for the account until the password is set again
        return None


def _upsert_state(dialect_name: str, address: str, values: dict[str, Any]) -> Executable:
    """INSERT the credential row, or UPDATE ``values`` in the existing one."""
    row = {"address": address, "must_change": False, **values}
    if dialect_name == "postgresql":
        pg_statement = postgresql.insert(account_credentials).values(**row)
        return pg_statement.on_conflict_do_update(index_elements=["address"], set_=values)
    lite_statement = sqlite.insert(account_credentials).values(**row)
    return lite_statement.on_conflict_do_update(index_elements=["address"], set_=values)


def _scram_iterations_text(dialect_name: str) -> ColumnElement[str]:
    """The ``iterations`` part of ``iterations$salt$StoredKey$ServerKey``, in SQL (no portable split)."""
    # Literals, not bound parameters: PostgreSQL matches the GROUP BY expression to the selected one.
    column = account_credentials.c.scram
    dollar: ColumnElement[str] = literal_column("'$'")
    one: ColumnElement[int] = literal_column("1")
    if dialect_name == "postgresql":
        return func.split_part(column, dollar, one)
    return func.substr(column, one, func.instr(column, dollar) - one)


def _app_password(row: Any) -> AppPassword:
    scopes = frozenset(scope for scope in row.scopes.split(",") if scope)
    return AppPassword(row.id, row.address, row.name, scopes, row.created_at, row.expires_at,
                       row.last_used_at, row.last_used_ip)


class SqlCredentialStore:
    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._writer = for_writing(engine)
        self._clock = clock or SystemClock()

    def __repr__(self) -> str:
        return "SqlCredentialStore()"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    async def _require_account(self, conn: AsyncConnection, address: str) -> None:
        if await conn.scalar(select(accounts.c.address).where(accounts.c.address == address)) is None:
            raise NotFound(f"account {address} not found")

    async def _write_state(self, address: str, change: str | None = None, **values: Any) -> None:
        """Upsert the state; ``change``: the account change recorded in the same transaction."""
        async with self._writer.begin() as conn:
            await self._require_account(conn, address)
            await conn.execute(_upsert_state(conn.dialect.name, address, values))
            if change is not None:
                await record_change(conn, address, change, self._now())

    # password facts

    async def get_credentials(self, address: str) -> CredentialState | None:
        query = (
            select(accounts.c.address, *(c for c in account_credentials.c if c.name != "address"))
            .select_from(accounts.outerjoin(account_credentials))
            .where(accounts.c.address == address)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return CredentialState(
            address=address, scram=_scram_or_none(row.scram), legacy_scheme=row.legacy_scheme,
            must_change=bool(row.must_change), password_changed_at=row.password_changed_at,
            totp_secret=row.totp_secret, totp_last_step=row.totp_last_step,
        )

    async def set_password(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        *,
        legacy_scheme: str | None = None,
        must_change: bool = False,
    ) -> None:
        values = {"scram": scram.to_text() if scram else None, "legacy_scheme": legacy_scheme,
                  "must_change": must_change, "password_changed_at": self._now()}
        await self._replace_hash(address, password_hash, values)

    async def upgrade_hash(
        self, address: str, password_hash: str, scram: ScramSecrets | None, *, expected_hash: str
    ) -> bool:
        values: dict[str, Any] = {"legacy_scheme": None}
        if scram is not None:
            values["scram"] = scram.to_text()
        async with self._writer.begin() as conn:
            swapped = await conn.execute(
                update(accounts)
                .where(and_(accounts.c.address == address, accounts.c.password_hash == expected_hash))
                .values(password_hash=password_hash)
            )
            if not swapped.rowcount:  # changed since it was verified (or gone): that change wins
                return False
            await conn.execute(_upsert_state(conn.dialect.name, address, values))
        return True

    async def _replace_hash(self, address: str, password_hash: str, values: dict[str, Any]) -> None:
        """A new password, and its account-change signal (``upgrade_hash`` keeps the password: none)."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(accounts).where(accounts.c.address == address).values(password_hash=password_hash)
            )
            if not result.rowcount:
                raise NotFound(f"account {address} not found")
            await conn.execute(_upsert_state(conn.dialect.name, address, values))
            await record_change(conn, address, CHANGE_PASSWORD, values["password_changed_at"])

    async def set_must_change(self, address: str, must_change: bool) -> None:
        await self._write_state(address, CHANGE_MUST_CHANGE if must_change else None, must_change=must_change)

    async def most_common_scram_iterations(self) -> int | None:
        async with self._engine.connect() as conn:
            iterations = _scram_iterations_text(conn.dialect.name).label("iterations")
            query = (
                select(iterations, func.count().label("accounts"))
                .where(account_credentials.c.scram.is_not(None))
                .group_by(iterations)
            )
            counts = [(int(row.accounts), row.iterations) for row in await conn.execute(query)]
        numbers = [(accounts, int(text)) for accounts, text in counts if str(text).isdigit()]
        return max(numbers)[1] if numbers else None

    async def list_legacy(self) -> list[tuple[str, str]]:
        query = (
            select(account_credentials.c.address, account_credentials.c.legacy_scheme)
            .where(account_credentials.c.legacy_scheme.is_not(None))
            .order_by(account_credentials.c.address)
        )
        async with self._engine.connect() as conn:
            return [(row.address, row.legacy_scheme) for row in await conn.execute(query)]

    # TOTP and recovery codes

    async def set_totp(self, address: str, encrypted_secret: str | None, recovery_digests: list[str]) -> None:
        async with self._writer.begin() as conn:
            await self._require_account(conn, address)
            values = {"totp_secret": encrypted_secret, "totp_last_step": None}
            await conn.execute(_upsert_state(conn.dialect.name, address, values))
            await conn.execute(delete(recovery_codes).where(recovery_codes.c.address == address))
            rows = [{"address": address, "digest": digest} for digest in dict.fromkeys(recovery_digests)]
            if rows:
                await conn.execute(insert(recovery_codes), rows)
            if encrypted_secret is not None:  # the main password alone no longer logs in
                await record_change(conn, address, CHANGE_TWO_FACTOR_ON, self._now())

    async def claim_totp_step(self, address: str, step: int) -> bool:
        column = account_credentials.c.totp_last_step
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(account_credentials)
                .where(and_(account_credentials.c.address == address,
                            account_credentials.c.totp_secret.is_not(None),
                            or_(column.is_(None), column < step)))
                .values(totp_last_step=step)
            )
        return bool(result.rowcount)

    async def use_recovery_code(self, address: str, digest: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(recovery_codes).where(
                    and_(recovery_codes.c.address == address, recovery_codes.c.digest == digest)
                )
            )
        return bool(result.rowcount)

    async def count_recovery_codes(self, address: str) -> int:
        query = select(func.count()).select_from(recovery_codes).where(recovery_codes.c.address == address)
        async with self._engine.connect() as conn:
            return int(await conn.scalar(query) or 0)

    # app passwords

    async def add_app_password(
        self, address: str, name: str, digest: str, scopes: frozenset[str], expires_at: datetime | None
    ) -> AppPassword:
        created_at = self._now()
        values = {"address": address, "name": name, "digest": digest, "scopes": ",".join(sorted(scopes)),
                  "created_at": created_at, "expires_at": expires_at}
        try:
            async with self._writer.begin() as conn:
                await self._require_account(conn, address)
                if await self._app_password_id(conn, address, name) is not None:
                    raise AlreadyExists(f"app password {name!r} of {address} already exists")
                await conn.execute(insert(app_passwords).values(**values))
                new_id = await self._app_password_id(conn, address, name)
        except IntegrityError:
            raise AlreadyExists(f"app password {name!r} of {address} already exists") from None
        assert new_id is not None
        return AppPassword(new_id, address, name, frozenset(scopes), created_at, expires_at)

    async def _app_password_id(self, conn: AsyncConnection, address: str, name: str) -> int | None:
        found = await conn.scalar(
            select(app_passwords.c.id).where(and_(app_passwords.c.address == address, app_passwords.c.name == name))
        )
        return None if found is None else int(found)

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        query = select(app_passwords).where(app_passwords.c.address == address).order_by(app_passwords.c.name)
        async with self._engine.connect() as conn:
            return [_app_password(row) for row in await conn.execute(query)]

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None:
        query = select(app_passwords).where(
            and_(app_passwords.c.address == address, app_passwords.c.digest == digest)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _app_password(row)

    async def revoke_app_password(self, address: str, name: str) -> None:
        async with self._writer.begin() as conn:
            found = await self._app_password_id(conn, address, name)
            if found is None:
                raise NotFound(f"no app password {name!r} for {address}")
            await conn.execute(delete(app_passwords).where(app_passwords.c.id == found))
            await record_change(conn, address, CHANGE_APP_PASSWORD_REVOKED, self._now(), found)

    async def touch_app_password(self, app_password_id: int, at: datetime, client_ip: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(
                update(app_passwords).where(app_passwords.c.id == app_password_id)
                .values(last_used_at=at, last_used_ip=client_ip[:64])
            )

    # login history

    async def append_login_event(self, event: LoginEvent) -> None:
        values = {"at": event.at, "account": event.account, "kind": event.kind[:32], "result": event.result[:16],
                  "protocol": event.protocol[:16], "mechanism": event.mechanism[:32],
                  "client_ip": event.client_ip[:64], "tls_version": event.tls_version[:16], "detail": event.detail}
        async with self._writer.begin() as conn:
            await conn.execute(insert(login_history).values(**values))

    async def list_login_events(self, account: str, limit: int = 100) -> list[LoginEvent]:
        query = (
            select(login_history).where(login_history.c.account == account)
            .order_by(login_history.c.at.desc(), login_history.c.id.desc()).limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [LoginEvent(row.at, row.account, row.kind, row.result, row.protocol, row.mechanism,
                           row.client_ip, row.tls_version, row.detail) for row in rows]
