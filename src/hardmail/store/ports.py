"""The narrow storage interfaces (Protocols) every backend implements, and their records.

Everything outside ``store/`` reaches storage only through these. One contract test suite
(tests/contract) runs against every backend. Addresses and domains are passed and returned in
their lookup form (see ``hardmail.core.address``): domains as lower-case A-labels, addresses as
``Address.key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hardmail.store.ports_access import AccessStore
    from hardmail.store.ports_credentials import CredentialStore
    from hardmail.store.ports_mailbox import MailboxIndex
    from hardmail.store.ports_msgauth import GreylistStore
    from hardmail.store.ports_queue import QueueStore
    from hardmail.store.ports_security import SecurityStore


class StoreError(Exception):
    """Base of storage errors; the message is safe to show to an admin."""


class AlreadyExists(StoreError):
    pass


class NotFound(StoreError):
    pass


class InUse(StoreError):
    """The object is still referenced (e.g. a domain that has accounts)."""


class Unavailable(StoreError):
    """The database cannot be reached or used (refused connection, missing rights, full disk)."""


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    enabled: bool = True
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    password_hash: str = field(repr=False)
    enabled: bool = True
    display_name: str = ""
    created_at: datetime | None = None
    frozen: bool = False  # incident containment: no login, no sending; mail is still received
    frozen_reason: str = ""

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


# What an ``account_changes`` row says happened (see AccountStore.account_changes_since).
CHANGE_DISABLED = "disabled"
CHANGE_ENABLED = "enabled"
CHANGE_FROZEN = "frozen"
CHANGE_UNFROZEN = "unfrozen"
CHANGE_PASSWORD = "password"
CHANGE_APP_PASSWORD_REVOKED = "app-password-revoked"
CHANGE_REMOVED = "removed"
# The main password is no longer accepted for mail logins (hardmail.policy.login): TOTP turned on,
# or the password must be changed. Both end the sessions that logged in with it, as a new one does.
CHANGE_TWO_FACTOR_ON = "two-factor-on"
CHANGE_MUST_CHANGE = "must-change"


@dataclass(frozen=True, slots=True)
class AccountChange:
    """One durable "this account changed" signal, written in the transaction of the change, so
    that every server process can end the sessions it affects (``hardmail.server.sessions``)."""

    id: int  # increasing in the order the changes were written
    account: str
    kind: str  # one of the CHANGE_* names above
    at: datetime
    credential_id: int | None = None  # the app password revoked


@dataclass(frozen=True, slots=True)
class Alias:
    """``source`` is ``local@domain``, or ``@domain`` for a catch-all."""

    source: str
    targets: tuple[str, ...]
    enabled: bool = True

    @property
    def is_catch_all(self) -> bool:
        return self.source.startswith("@")

    @property
    def domain(self) -> str:
        return self.source.rpartition("@")[2]


class DomainStore(Protocol):
    async def add_domain(self, name: str) -> Domain:
        """Raises AlreadyExists."""
        ...

    async def get_domain(self, name: str) -> Domain | None: ...

    async def list_domains(self) -> list[Domain]: ...

    async def remove_domain(self, name: str) -> None:
        """Raises NotFound, or InUse while accounts or aliases of the domain exist."""
        ...


class AccountStore(Protocol):
    async def add_account(
        self, address: str, password_hash: str, display_name: str = ""
    ) -> Account:
        """Raises NotFound (unknown domain) or AlreadyExists (account or alias of that name)."""
        ...

    async def get_account(self, address: str) -> Account | None: ...

    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    async def set_password_hash(self, address: str, password_hash: str) -> None:
        """Raises NotFound."""
        ...

    async def set_account_enabled(self, address: str, enabled: bool) -> None:
        """Raises NotFound. Records an account change (disabled or enabled)."""
        ...

    async def set_account_frozen(self, address: str, frozen: bool, reason: str = "") -> None:
        """Freeze (with the admin's reason) or unfreeze; records an account change. Raises NotFound."""
        ...

    async def remove_account(self, address: str) -> None:
        """Raises NotFound. Records an account change (removed)."""
        ...

    async def latest_account_change(self) -> int:
        """The id of the newest account change, 0 when there is none (one indexed look-up)."""
        ...

    async def account_changes_since(self, after_id: int, limit: int = 1000) -> list[AccountChange]:
        """The account changes with an id above ``after_id``, oldest first, at most ``limit``."""
        ...

    async def prune_account_changes(self, before: datetime) -> int:
        """Delete the account changes written before ``before``; how many were deleted."""
        ...


class AliasStore(Protocol):
    async def add_alias(self, source: str, targets: tuple[str, ...]) -> Alias:
        """Raises NotFound (unknown domain) or AlreadyExists (alias or account of that name)."""
        ...

    async def get_alias(self, source: str) -> Alias | None: ...

    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    async def aliases_targeting(self, address: str) -> list[Alias]:
        """Aliases (not catch-alls) that list ``address`` among their targets."""
        ...

    async def remove_alias(self, source: str) -> None:
        """Raises NotFound."""
        ...


class SettingsStore(Protocol):
    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str) -> None: ...


class Store(DomainStore, AccountStore, AliasStore, SettingsStore, Protocol):
    """Everything the server needs from its database, plus life-cycle."""

    async def migrate(self) -> None:
        """Bring the schema to the newest version (idempotent; writes nothing when it is there)."""
        ...

    async def schema_is_current(self) -> bool:
        """Whether the schema is at the newest version (reads only: a read-only user may ask)."""
        ...

    async def close(self) -> None: ...

    @property
    def queue(self) -> QueueStore:
        """The outbound queue (``hardmail.store.ports_queue``)."""
        ...

    @property
    def credentials(self) -> CredentialStore:
        """Credentials and login history (``hardmail.store.ports_credentials``)."""
        ...

    @property
    def access(self) -> AccessStore:
        """IP ranges, bans, failed-login counts and rate counters (``hardmail.store.ports_access``)."""
        ...

    @property
    def msgauth(self) -> GreylistStore:
        """Greylisting triplets and whitelisted networks (``hardmail.store.ports_msgauth``)."""
        ...

    @property
    def mailbox(self) -> MailboxIndex:
        """The mailbox index: folders, messages, usage, change feed (``hardmail.store.ports_mailbox``)."""
        ...

    @property
    def security(self) -> SecurityStore:
        """Audit runs, sign-in sources, notice preferences, the login feed (``hardmail.store.ports_security``)."""
        ...
