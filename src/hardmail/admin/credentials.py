"""The admin use-cases for credentials beyond the password itself, shared by the CLI and the API:
two-factor authentication (TOTP and recovery codes), app passwords, imported legacy hashes, the
must-change flag and the login history.

Every refusal is an :class:`AdminError` (what was wrong, what to do); every change is a credential
event (logged and kept in the login history). Second-factor checks are limited per account: each
check takes one slot of a counter in the shared access store (an atomic fixed-window counter, so
parallel guesses cannot slip past it), a matching code gives its slot back, and once
``max_failures`` wrong codes are counted in a window of ``lockout_minutes`` every check (TOTP or
recovery code) is refused until the window ends. Secrets are returned once to the caller and are
never part of a message.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hardmail.admin.service import AdminError
from hardmail.auth import totp
from hardmail.auth.app_passwords import MAX_NAME_CHARS, app_password_digest, new_app_password, parse_scopes
from hardmail.auth.events import now_utc, record_admin_event
from hardmail.auth.hash_import import UnsupportedScheme, resolve_import
from hardmail.auth.legacy import SCHEME_NAMES, UnknownHashFormat, scheme_named
from hardmail.auth.server_key import ServerKeyError, load_or_create_server_key
from hardmail.config.schema import TwoFactorSection
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.core.clock import Clock, SystemClock
from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_credentials import AppPassword, CredentialState, LoginEvent


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """A TOTP secret shown to the user, not yet active until a first code confirms it."""

    address: str
    secret: str = field(repr=False)
    uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ImportedHash:
    address: str
    scheme: str
    created: bool = False  # the account was made by this import


def _address_key(text: str) -> str:
    try:
        return parse_address_arg(text).key
    except AddressError as exc:
        raise AdminError(f"invalid address {text!r}: {exc}", "give an address such as alice@example.org") from None


class NoSuchAccount(AdminError):
    """The address is not an account."""


def _no_account(key: str) -> AdminError:
    return NoSuchAccount(f"no account {key}", "`hardmail account list` shows the accounts")


class CredentialService:
    def __init__(
        self, store: Store, data_dir: Path, two_factor: TwoFactorSection | None = None, clock: Clock | None = None
    ) -> None:
        self._store = store
        self._credentials = store.credentials
        self._data_dir = data_dir
        self._two_factor = two_factor or TwoFactorSection()
        self._clock = clock or SystemClock()

    async def _state(self, address: str) -> tuple[str, CredentialState]:
        key = _address_key(address)
        state = await self._credentials.get_credentials(key)
        if state is None:
            raise _no_account(key)
        return key, state

    def _server_key(self) -> bytes:
        try:
            return load_or_create_server_key(self._data_dir)
        except ServerKeyError as exc:
            raise AdminError(str(exc), "fix the key file named above, then run the command again") from None

    async def _event(self, key: str, kind: str, detail: str = "") -> None:
        await record_admin_event(self._credentials, self._clock, key, kind, detail)

    # two-factor authentication

    async def begin_two_factor(self, address: str) -> TotpEnrolment:
        key, state = await self._state(address)
        if state.two_factor:
            raise AdminError(f"two-factor authentication is already on for {key}",
                             f"turn it off first with `hardmail account 2fa disable {key}`")
        secret = totp.new_totp_secret()
        return TotpEnrolment(key, secret, totp.provisioning_uri(secret, key, self._two_factor.issuer))

    async def confirm_two_factor(self, enrolment: TotpEnrolment, code: str) -> list[str]:
        """Turn TOTP on once ``code`` matches; returns the new one-time recovery codes."""
        step = totp.matching_step(enrolment.secret, code, self._clock.now())
        if step is None:
            raise AdminError("the code does not match",
                             "check the device's clock and type the code the app shows now")
        codes = totp.new_recovery_codes()
        encrypted = totp.encrypt_secret(enrolment.secret, self._server_key())
        digests = [totp.recovery_code_digest(code) for code in codes]
        await self._on_account(enrolment.address, self._credentials.set_totp(enrolment.address, encrypted, digests))
        await self._credentials.claim_totp_step(enrolment.address, step)  # the confirming code is spent
        await self._event(enrolment.address, "2fa-enabled")
        return codes

    async def disable_two_factor(self, address: str) -> str:
        key, state = await self._state(address)
        if not state.two_factor:
            raise AdminError(f"two-factor authentication is not on for {key}", "nothing to do")
        await self._on_account(key, self._credentials.set_totp(key, None, []))
        await self._event(key, "2fa-disabled")
        return key

    async def verify_second_factor(self, address: str, code: str) -> str:
        """Check a TOTP code (each usable once) or a recovery code (deleted when used); returns
        "totp" or "recovery-code". Raises AdminError when neither matches, or while the account's
        second-factor checks are locked after too many wrong codes."""
        key, state = await self._state(address)
        if state.totp_secret is None:
            raise AdminError(f"two-factor authentication is not on for {key}",
                             f"turn it on with `hardmail account 2fa enable {key}`")
        window = await self._take_attempt(key)
        kind = await self._matching_code(key, state.totp_secret, code)
        if kind is None:
            await self._event(key, "2fa-code-wrong")
            raise AdminError("the code is wrong or was already used", "type the code the app shows now")
        await self._attempt_counter(key, window, -1)  # a right code does not count against the limit
        return kind

    async def _matching_code(self, key: str, encrypted_secret: str, code: str) -> str | None:
        step = totp.matching_step(self._decrypt(encrypted_secret), code, self._clock.now())
        if step is not None and await self._credentials.claim_totp_step(key, step):
            return "totp"
        if step is None and await self._credentials.use_recovery_code(key, totp.recovery_code_digest(code)):
            left = await self._credentials.count_recovery_codes(key)
            await self._event(key, "recovery-code-used", f"{left} left")
            return "recovery-code"
        return None

    async def _take_attempt(self, key: str) -> int:
        """Count this check in the current window (before checking: parallel guesses each take a
        slot); the window's start. Raises AdminError when the window's slots are used up."""
        window_seconds = self._two_factor.lockout_minutes * 60
        window = int(self._clock.now()) // window_seconds * window_seconds
        attempts = await self._attempt_counter(key, window, 1)
        if attempts > self._two_factor.max_failures:
            until = datetime.fromtimestamp(window + window_seconds, UTC).isoformat(timespec="minutes")
            if attempts == self._two_factor.max_failures + 1:  # recorded once, not for every refused try
                await self._event(key, "2fa-locked", f"until {until}")
            raise AdminError(
                f"too many wrong two-factor codes for {key}; checks are locked until {until} UTC",
                "wait until then and type the code the app shows at that time")
        return window

    async def _attempt_counter(self, key: str, window: int, amount: int) -> int:
        return await self._store.access.add_to_counter(f"2fa-attempts:{key}", window, amount)

    def _decrypt(self, token: str) -> str:
        try:
            return totp.decrypt_secret(token, self._server_key())
        except totp.SecretUnreadable as exc:
            raise AdminError(str(exc), "restore the server key from a backup, or turn 2FA off and on again") from None

    # app passwords

    async def add_app_password(
        self, address: str, name: str, scopes: list[str], expires_days: int | None = None
    ) -> tuple[AppPassword, str]:
        """The new app password's record and its text (shown once, never stored)."""
        key, _state = await self._state(address)
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise AdminError(f"an app password needs a name of 1 to {MAX_NAME_CHARS} characters",
                             "name it after the device or program, e.g. \"phone\"")
        try:
            scope_set = parse_scopes(scopes)
        except ValueError as exc:
            raise AdminError(str(exc), "for example --scope smtp --scope imap") from None
        if expires_days is not None and expires_days <= 0:
            raise AdminError("--expires-days must be a positive number of days", "or leave it out for no expiry")
        expires_at = now_utc(self._clock) + timedelta(days=expires_days) if expires_days else None
        secret = new_app_password()
        try:
            record = await self._credentials.add_app_password(
                key, name, app_password_digest(secret), scope_set, expires_at)
        except AlreadyExists as exc:
            raise AdminError(str(exc), "choose another name, or revoke the existing one first") from None
        await self._event(key, "app-password-created", f"{name!r} for {','.join(sorted(scope_set))}")
        return record, secret

    async def list_app_passwords(self, address: str) -> list[AppPassword]:
        key, _state = await self._state(address)
        return await self._credentials.list_app_passwords(key)

    async def revoke_app_password(self, address: str, name: str) -> str:
        key, _state = await self._state(address)
        try:
            await self._credentials.revoke_app_password(key, name.strip())
        except NotFound:
            raise AdminError(f"no app password {name.strip()!r} for {key}",
                             f"`hardmail account app-password list {key}` shows them") from None
        await self._event(key, "app-password-revoked", repr(name.strip()))
        return key

    # imported hashes, must-change flag, history

    async def import_hash(
        self, address: str, scheme: str | None, hash_text: str, *, create: bool = False
    ) -> ImportedHash:
        """Set an account's password hash to one imported from another server: the scheme named,
        or read from Dovecot's ``{SCHEME}`` prefix or the hash's own form. The first successful
        login replaces it with Argon2id. ``create`` makes the account when it does not exist (its
        domain must be hosted)."""
        key = _address_key(address)
        try:
            known, stored = resolve_import(scheme, hash_text)
        except UnknownHashFormat as exc:
            raise AdminError(f"hash refused: {exc}", _import_hint(exc, scheme, key)) from None
        created = await self._credentials.get_credentials(key) is None
        if created:
            if not create:
                raise _no_account(key)
            await self._create_account(key, stored)
        await self._on_account(key, self._credentials.set_password(key, stored, None, legacy_scheme=known.name))
        await self._event(key, "hash-imported", known.name)
        return ImportedHash(key, known.name, created)

    async def _create_account(self, key: str, stored: str) -> None:
        domain = key.rpartition("@")[2]
        try:
            await self._store.add_account(key, stored, "")
        except NotFound:
            raise AdminError(f"domain {domain} is not hosted here",
                             f"add it with `hardmail domain add {domain}`") from None
        except AlreadyExists as exc:
            raise AdminError(str(exc), "an alias has that address; remove it first") from None

    async def list_legacy(self) -> list[tuple[str, str]]:
        return await self._credentials.list_legacy()

    async def set_must_change(self, address: str, must_change: bool) -> str:
        key, _state = await self._state(address)
        await self._on_account(key, self._credentials.set_must_change(key, must_change))
        await self._event(key, "must-change-set" if must_change else "must-change-cleared")
        return key

    async def login_history(self, address: str, limit: int = 100) -> list[LoginEvent]:
        return await self._credentials.list_login_events(_address_key(address), limit)

    async def _on_account(self, key: str, operation: Awaitable[None]) -> None:
        try:
            await operation
        except NotFound:
            raise _no_account(key) from None


def expiry_text(moment: datetime | None) -> str:
    return moment.isoformat(timespec="minutes") if moment else "never"


def _import_hint(exc: UnknownHashFormat, scheme: str | None, address: str) -> str:
    """What to do about a refused imported hash (never quoting the hash)."""
    if isinstance(exc, UnsupportedScheme) and exc.plaintext:
        return (f"set it as the password instead: `hardmail account passwd {address} --password-stdin` "
                "(it is stored as Argon2id)")
    if isinstance(exc, UnsupportedScheme):
        return (f"set a new password with `hardmail account passwd {address}`, or export the hash from the old "
                "server in one of the accepted schemes")
    named = scheme_named(scheme) if scheme else None
    if named:
        return f"give the hash as {named.example}"
    return f"keep Dovecot's {{SCHEME}} prefix, or name the scheme with --scheme ({', '.join(SCHEME_NAMES)})"
