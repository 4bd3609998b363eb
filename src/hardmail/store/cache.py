"""A read-through cache in front of a :class:`hardmail.store.ports.Store` for the look-ups the SMTP
path makes per recipient: domains, accounts, aliases and the aliases that target an account.

``CachedStore`` implements the same Protocol, so callers do not change. A cached answer, also a
negative one ("no such domain"), is served for ``ttl`` seconds; so a change another process makes
(the ``hardmail`` CLI) takes effect within ``ttl`` seconds. Every write made through the wrapper
(domains, accounts, aliases, passwords) empties the cache at once, so the server process sees its
own changes immediately, and :meth:`CachedStore.forget_account` drops what is cached about one
account when another process changed it (the server's account-change poll,
``hardmail.server.sessions``). Everything else (lists, settings, queue, access, greylisting,
mailbox index, account changes) is passed through uncached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from hardmail.auth.scram import ScramSecrets
from hardmail.core.clock import Clock
from hardmail.store.ports import Account, AccountChange, Alias, Domain, Store
from hardmail.store.ports_access import AccessStore
from hardmail.store.ports_credentials import (
    AppPassword,
    CredentialState,
    CredentialStore,
    LoginEvent,
)
from hardmail.store.ports_mailbox import MailboxIndex
from hardmail.store.ports_msgauth import GreylistStore
from hardmail.store.ports_queue import QueueStore
from hardmail.store.ports_security import SecurityStore

DEFAULT_MAX_ENTRIES = 10_000
T = TypeVar("T")


class TtlCache:
    """A bounded map whose entries expire ``ttl`` seconds after they were stored (least recently
    used first when full). Hand-written (a dozen lines) because it must run on the injectable
    :class:`Clock` and be emptied with a generation count, which ``functools`` caches cannot."""

    def __init__(self, clock: Clock, ttl: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._clock, self._ttl, self._max = clock, ttl, max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, Any]] = OrderedDict()
        self.generation = 0  # bumped by clear(): a read that began before a write is not stored

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str]) -> tuple[bool, Any]:
        """(True, value) for a fresh entry, else (False, None)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self._clock.monotonic():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: tuple[str, str], value: Any) -> None:
        self._entries[key] = (self._clock.monotonic() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.generation += 1

    def drop(self, keys: list[tuple[str, str]]) -> None:
        """Forget these entries; a read in flight is not stored either (it may predate the change)."""
        for key in keys:
            self._entries.pop(key, None)
        self.generation += 1


class CachedStore:
    """The :class:`Store` ``inner`` with its per-recipient look-ups cached; build it with
    :func:`cached_store`."""

    def __init__(self, inner: Store, cache: TtlCache) -> None:
        self._inner = inner
        self._cache = cache
        self._credentials = _InvalidatingCredentials(inner.credentials, cache)

    def __repr__(self) -> str:
        return f"CachedStore({self._inner!r})"

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (e.g. SqlStore.engine, used by tests) stay reachable.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    @property
    def inner(self) -> Store:
        return self._inner

    def forget_account(self, address: str) -> None:
        """Drop every cached answer about ``address`` (changed by another process)."""
        self._cache.drop([(kind, address) for kind in ("account", "alias", "targeting")])

    async def _read(self, kind: str, key: str, load: Callable[[str], Awaitable[T]]) -> T:
        found, value = self._cache.get((kind, key))
        if found:
            return value  # type: ignore[no-any-return]
        generation = self._cache.generation
        value = await load(key)
        if generation == self._cache.generation:  # no write happened while we were reading
            self._cache.put((kind, key), value)
        return value  # type: ignore[no-any-return]

    async def _write(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        finally:
            self._cache.clear()  # also after a failed write: it may have raced another change

    # cached reads ---------------------------------------------------------------------------
    async def get_domain(self, name: str) -> Domain | None:
        return await self._read("domain", name, self._inner.get_domain)

    async def get_account(self, address: str) -> Account | None:
        return await self._read("account", address, self._inner.get_account)

    async def get_alias(self, source: str) -> Alias | None:
        return await self._read("alias", source, self._inner.get_alias)

    async def aliases_targeting(self, address: str) -> list[Alias]:
        return list(await self._read("targeting", address, self._inner.aliases_targeting))

    # writes: each empties the cache ------------------------------------------------------------
    async def add_domain(self, name: str) -> Domain:
        return await self._write(self._inner.add_domain(name))

    async def remove_domain(self, name: str) -> None:
        await self._write(self._inner.remove_domain(name))

    async def add_account(self, address: str, password_hash: str, display_name: str = "") -> Account:
        return await self._write(self._inner.add_account(address, password_hash, display_name))

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        await self._write(self._inner.set_password_hash(address, password_hash))

    async def set_account_enabled(self, address: str, enabled: bool) -> None:
        await self._write(self._inner.set_account_enabled(address, enabled))

    async def set_account_frozen(self, address: str, frozen: bool, reason: str = "") -> None:
        await self._write(self._inner.set_account_frozen(address, frozen, reason))

    async def remove_account(self, address: str) -> None:
        await self._write(self._inner.remove_account(address))

    async def add_alias(self, source: str, targets: tuple[str, ...]) -> Alias:
        return await self._write(self._inner.add_alias(source, targets))

    async def remove_alias(self, source: str) -> None:
        await self._write(self._inner.remove_alias(source))

    # passed through --------------------------------------------------------------------------
    async def list_domains(self) -> list[Domain]:
        return await self._inner.list_domains()

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        return await self._inner.list_accounts(domain)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return await self._inner.list_aliases(domain)

    async def latest_account_change(self) -> int:
        return await self._inner.latest_account_change()

    async def account_changes_since(self, after_id: int, limit: int = 1000) -> list[AccountChange]:
        return await self._inner.account_changes_since(after_id, limit)

    async def prune_account_changes(self, before: datetime) -> int:
        return await self._inner.prune_account_changes(before)

    async def get_setting(self, key: str) -> str | None:
        return await self._inner.get_setting(key)

    async def set_setting(self, key: str, value: str) -> None:
        await self._inner.set_setting(key, value)

    async def migrate(self) -> None:
        await self._write(self._inner.migrate())

    async def schema_is_current(self) -> bool:
        return await self._inner.schema_is_current()

    async def close(self) -> None:
        self._cache.clear()
        await self._inner.close()

    @property
    def queue(self) -> QueueStore:
        return self._inner.queue

    @property
    def credentials(self) -> CredentialStore:
        return self._credentials

    @property
    def access(self) -> AccessStore:
        return self._inner.access

    @property
    def msgauth(self) -> GreylistStore:
        return self._inner.msgauth

    @property
    def mailbox(self) -> MailboxIndex:
        return self._inner.mailbox

    @property
    def security(self) -> SecurityStore:
        return self._inner.security


class _InvalidatingCredentials:
    """The inner credential store; the two writes that replace ``accounts.password_hash`` empty the
    cache, so a cached :class:`Account` never outlives its password hash in this process."""

    def __init__(self, inner: CredentialStore, cache: TtlCache) -> None:
        self._inner = inner
        self._cache = cache

    def __repr__(self) -> str:
        return f"_InvalidatingCredentials({self._inner!r})"

    async def set_password(self, address: str, password_hash: str, scram: ScramSecrets | None, *,
                           legacy_scheme: str | None = None, must_change: bool = False) -> None:
        try:
            await self._inner.set_password(address, password_hash, scram, legacy_scheme=legacy_scheme,
                                           must_change=must_change)
        finally:
            self._cache.clear()

    async def upgrade_hash(self, address: str, password_hash: str, scram: ScramSecrets | None, *,
                           expected_hash: str) -> bool:
        try:
            return await self._inner.upgrade_hash(address, password_hash, scram, expected_hash=expected_hash)
        finally:
            self._cache.clear()

    async def get_credentials(self, address: str) -> CredentialState | None:
        return await self._inner.get_credentials(address)

    async def set_must_change(self, address: str, must_change: bool) -> None:
        await self._inner.set_must_change(address, must_change)

    async def most_common_scram_iterations(self) -> int | None:
        return await self._inner.most_common_scram_iterations()

    async def list_legacy(self) -> list[tuple[str, str]]:
        return await self._inner.list_legacy()

    async def set_totp(self, address: str, encrypted_secret: str | None, recovery_digests: list[str]) -> None:
        await self._inner.set_totp(address, encrypted_secret, recovery_digests)

    async def claim_totp_step(self, address: str, step: int) -> bool:
        return await self._inner.claim_totp_step(address, step)

    async def use_recovery_code(self, address: str, digest: str) -> bool:
        return await self._inner.use_recovery_code(address, digest)

    async def count_recovery_codes(self, address: str) -> int:
        return await self._inner.count_recovery_codes(address)

    async def add_app_password(self, address: str, name: str, digest: str, scopes: frozenset[str],
                               expires_at: datetime | None) -> AppPassword:
        return await self._inner.add_app_password(address, name, digest, scopes, expires_at)

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        return await self._inner.list_app_passwords(address)

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None:
        return await self._inner.find_app_password(address, digest)

    async def revoke_app_password(self, address: str, name: str) -> None:
        await self._inner.revoke_app_password(address, name)

    async def touch_app_password(self, app_password_id: int, at: datetime, client_ip: str) -> None:
        await self._inner.touch_app_password(app_password_id, at, client_ip)

    async def append_login_event(self, event: LoginEvent) -> None:
        await self._inner.append_login_event(event)

    async def list_login_events(self, account: str, limit: int = 100) -> list[LoginEvent]:
        return await self._inner.list_login_events(account, limit)


def cached_store(inner: Store, clock: Clock, ttl: float, max_entries: int = DEFAULT_MAX_ENTRIES) -> Store:
    """``inner`` behind a read-through cache of ``ttl`` seconds; ``inner`` itself when ``ttl`` is 0."""
    if ttl <= 0:
        return inner
    return CachedStore(inner, TtlCache(clock, ttl, max_entries))
