"""The credential store port: SCRAM secrets, password facts, TOTP, recovery codes, app passwords
and the login history of each account (records and the Protocol every backend implements).

Secrets arrive here already protected: SCRAM keys (not password equivalents), the TOTP secret
encrypted with the server key, recovery codes and app passwords as SHA-256 digests. Records never
show a secret in their ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from hardmail.auth.scram import ScramSecrets

# What an app password may be used for (the login protocol names given to the authenticator).
SCOPES = ("smtp", "imap", "pop3")


@dataclass(frozen=True, slots=True)
class CredentialState:
    """Everything about an account's credentials but its password hash (in ``accounts``)."""

    address: str
    scram: ScramSecrets | None = None
    legacy_scheme: str | None = None  # set while the password hash is an imported legacy one
    must_change: bool = False
    password_changed_at: datetime | None = None
    totp_secret: str | None = field(default=None, repr=False)  # encrypted with the server key
    totp_last_step: int | None = None  # the newest TOTP time step used; older ones are refused

    @property
    def two_factor(self) -> bool:
        return self.totp_secret is not None


@dataclass(frozen=True, slots=True)
class AppPassword:
    id: int
    address: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None


@dataclass(frozen=True, slots=True)
class LoginEvent:
    """One line of an account's login history: a login attempt or a credential event."""

    at: datetime
    account: str
    kind: str  # "login", "password-set", "password-changed", "2fa-enabled", "app-password-created", ...
    result: str  # "success", "failure", "refused" or "done"
    protocol: str = ""  # "smtp", "imap", "pop3", "admin"
    mechanism: str = ""
    client_ip: str = ""
    tls_version: str = ""
    detail: str = ""


class CredentialStore(Protocol):
    async def get_credentials(self, address: str) -> CredentialState | None:
        """None when there is no such account; a default state when it has no credential row yet."""
        ...

    async def set_password(
        self,
        address: str,
        password_hash: str,
        scram: ScramSecrets | None,
        *,
        legacy_scheme: str | None = None,
        must_change: bool = False,
    ) -> None:
        """Replace the hash (in ``accounts``) and the SCRAM secrets together; the change time is now.
        Raises NotFound."""
        ...

    async def upgrade_hash(
        self, address: str, password_hash: str, scram: ScramSecrets | None, *, expected_hash: str
    ) -> bool:
        """Re-hash after a login (legacy scheme or new parameters): keeps the change time and the
        must-change flag, clears the legacy scheme; ``scram`` None keeps the stored secrets. A
        compare-and-swap: only while the stored hash is still ``expected_hash`` (the one verified);
        False (nothing written) when it is not, or when there is no such account."""
        ...

    async def set_must_change(self, address: str, must_change: bool) -> None:
        """Raises NotFound."""
        ...

    async def most_common_scram_iterations(self) -> int | None:
        """The iteration count most stored SCRAM secrets have (the higher on a tie); None when none."""
        ...

    async def list_legacy(self) -> list[tuple[str, str]]:
        """(address, scheme) of every account whose hash is still a legacy one, by address."""
        ...

    # TOTP and recovery codes

    async def set_totp(self, address: str, encrypted_secret: str | None, recovery_digests: list[str]) -> None:
        """Turn TOTP on (secret given) or off (None), replacing the recovery codes. Raises NotFound."""
        ...

    async def claim_totp_step(self, address: str, step: int) -> bool:
        """Record ``step`` as used if it is newer than the last used one; False means a replay."""
        ...

    async def use_recovery_code(self, address: str, digest: str) -> bool:
        """Delete the recovery code; False when it does not exist (or was already used)."""
        ...

    async def count_recovery_codes(self, address: str) -> int: ...

    # app passwords

    async def add_app_password(
        self, address: str, name: str, digest: str, scopes: frozenset[str], expires_at: datetime | None
    ) -> AppPassword:
        """Raises NotFound (no account) or AlreadyExists (an app password of that name)."""
        ...

    async def list_app_passwords(self, address: str) -> list[AppPassword]: ...

    async def find_app_password(self, address: str, digest: str) -> AppPassword | None: ...

    async def revoke_app_password(self, address: str, name: str) -> None:
        """Raises NotFound."""
        ...

    async def touch_app_password(self, app_password_id: int, at: datetime, client_ip: str) -> None:
        """Record the last use (time and client address)."""
        ...

    # login history

    async def append_login_event(self, event: LoginEvent) -> None: ...

    async def list_login_events(self, account: str, limit: int = 100) -> list[LoginEvent]:
        """The newest first."""
        ...
