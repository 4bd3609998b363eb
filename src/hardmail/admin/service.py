"""The admin use-cases for domains, accounts and aliases, shared by the CLI and the HTTP API.

Input is checked and normalised here (``hardmail.core.address``) before it reaches the store, and
every refusal is an :class:`AdminError` whose message says what was wrong and whose hint says what
to do. New passwords must pass the password policy (:mod:`hardmail.policy.passwords`); they are
hashed (Argon2id, and the SCRAM-SHA-256 secrets) in a worker thread and never appear in a message.
Setting or changing a password is a credential event (logged and kept in the login history).
Freezing an account (incident containment for a phished account: no login, no sending, mail is
still received) is one too, with the admin's reason. Every disable, freeze, password change and
removal is also signalled to the running server processes (the store records an account change
in the same transaction), which end the account's open sessions within a second.
A new alias is walked the way delivery would walk it (:func:`hardmail.delivery.recipients.review_new_alias`):
one that would make a loop is refused, and so is one whose target in a hosted domain matches no
account or alias, unless the admin allows that (then it is a warning).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hardmail.auth.events import record_admin_event
from hardmail.auth.hashing import hash_password
from hardmail.auth.scram import ScramSecrets, derive_secrets
from hardmail.config.schema import AuthSection, PasswordHashSection
from hardmail.core.address import AddressError, normalize_domain, parse_address_arg
from hardmail.core.clock import Clock, SystemClock
from hardmail.delivery.local_index import set_up_mailbox
from hardmail.delivery.recipients import Edge, review_new_alias
from hardmail.policy.passwords import check_new_password
from hardmail.store.ports import Account, Alias, AlreadyExists, Domain, InUse, NotFound, Store

if TYPE_CHECKING:
    from hardmail.mailbox import MailboxStore


class AdminError(Exception):
    """A refusal an admin can act on: ``message`` says what was wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _unknown_domain(domain: str) -> AdminError:
    return AdminError(
        f"domain {domain} is not hosted here",
        f"add it with `hardmail domain add {domain}`",
    )


def _domain_key(name: str) -> str:
    try:
        domain = normalize_domain(name)
    except AddressError as exc:
        raise AdminError(str(exc), "give a domain name such as example.org") from None
    if domain.startswith("["):
        raise AdminError(f"{name} is an address literal", "give a domain name such as example.org")
    return domain


def _address_key(text: str, what: str = "address") -> str:
    try:
        return parse_address_arg(text).key
    except AddressError as exc:
        hint = "give an address such as alice@example.org"
        if what == "target" and ("," in text or ";" in text):
            hint = "give several targets as separate arguments: `hardmail alias add SOURCE a@example.org b@example.org`"
        raise AdminError(f"invalid {what} {text!r}: {exc}", hint) from None


def _alias_source_key(text: str) -> str:
    """``local@domain``, or ``@domain`` for a catch-all, in lookup form."""
    stripped = text.strip()
    if stripped.startswith("@"):
        return "@" + _domain_key(stripped[1:])
    return _address_key(stripped, "alias address")


def _target_keys(source: str, targets: Iterable[str]) -> tuple[str, ...]:
    keys = tuple(dict.fromkeys(_address_key(target, "target") for target in targets))
    if not keys:
        raise AdminError("an alias needs at least one target", "give one or more target addresses")
    if source in keys:
        raise AdminError(f"alias {source} cannot deliver to itself", "remove it from the targets")
    return keys


@dataclass(frozen=True, slots=True)
class AliasAdded:
    alias: Alias
    missing: tuple[str, ...] = ()  # targets in hosted domains that match nothing yet (allowed)


def describe_loop(loop: tuple[Edge, ...]) -> str:
    """``a@x → b@x → a@x``; a target that reaches an alias under another name says which."""
    parts = [loop[0][0]]
    parts += [target if target == reached else f"{target} (= {reached})" for _, target, reached in loop]
    return " → ".join(parts)


def _loop_refusal(source: str, loop: tuple[Edge, ...]) -> AdminError:
    return AdminError(
        f"alias {source} would make a loop: {describe_loop(loop)}",
        "mail sent round a loop is never delivered; choose other targets, or change the alias on the loop",
    )


def _missing_refusal(source: str, missing: tuple[str, ...]) -> AdminError:
    names = ", ".join(missing)
    return AdminError(
        f"alias {source}: {names} {'is' if len(missing) == 1 else 'are'} not an account or alias here",
        f"create {'it' if len(missing) == 1 else 'them'} first (`hardmail account add {missing[0]}`), or add "
        "--allow-missing to create the alias anyway (mail for a missing target is not delivered until it exists)",
    )


class AdminService:
    def __init__(
        self,
        store: Store,
        hash_params: PasswordHashSection,
        *,
        auth: AuthSection | None = None,
        clock: Clock | None = None,
        plus_separator: str = "+",
        mailboxes: MailboxStore | None = None,
    ) -> None:
        self._store = store
        self._mailboxes = mailboxes  # a new account's folders are made here (else at its first delivery)
        self._plus = plus_separator  # smtp.plus_separator: aliases are checked as delivery resolves them
        self._hash_params = hash_params
        self._auth = auth or AuthSection(argon2=hash_params)
        self._clock = clock or SystemClock()

    # domains

    async def add_domain(self, name: str) -> Domain:
        domain = _domain_key(name)
        try:
            return await self._store.add_domain(domain)
        except AlreadyExists:
            raise AdminError(
                f"domain {domain} already exists", "`hardmail domain list` shows hosted domains"
            ) from None

    async def list_domains(self) -> list[Domain]:
        return await self._store.list_domains()

    async def remove_domain(self, name: str) -> str:
        """Returns the removed domain's name in lookup form."""
        domain = _domain_key(name)
        try:
            await self._store.remove_domain(domain)
        except NotFound:
            raise _unknown_domain(domain) from None
        except InUse as exc:
            raise AdminError(
                str(exc),
                f"remove them first; `hardmail account list --domain {domain}` and "
                f"`hardmail alias list --domain {domain}` show them",
            ) from None
        return domain

    async def _require_domain(self, domain: str) -> None:
        if await self._store.get_domain(domain) is None:
            raise _unknown_domain(domain)

    # accounts

    async def add_account(self, address: str, password: str, display_name: str = "") -> Account:
        key = _address_key(address)
        await self._require_domain(key.rpartition("@")[2])
        self._require_strong(password, key)
        password_hash, scram = await self._hash(password)
        try:
            account = await self._store.add_account(key, password_hash, display_name.strip())
        except AlreadyExists as exc:
            raise AdminError(
                str(exc), "choose another address, or remove the existing one first"
            ) from None
        except NotFound:
            raise _unknown_domain(key.rpartition("@")[2]) from None
        await self._call_on_account(key, self._store.credentials.set_password(key, password_hash, scram))
        await record_admin_event(self._store.credentials, self._clock, key, "password-set")
        if self._mailboxes is not None:  # INBOX and the special-use folders (RFC 6154)
            await set_up_mailbox(self._mailboxes, key)
        return account

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        return await self._store.list_accounts(None if domain is None else _domain_key(domain))

    async def set_password(self, address: str, password: str) -> str:
        """Returns the account's address in lookup form (as do the two methods below)."""
        key = await self._existing_account(address)
        self._require_strong(password, key)
        password_hash, scram = await self._hash(password)
        await self._call_on_account(key, self._store.credentials.set_password(key, password_hash, scram))
        await record_admin_event(self._store.credentials, self._clock, key, "password-changed")
        return key

    async def list_legacy_accounts(self) -> list[tuple[str, str]]:
        """(address, scheme) of the accounts whose password hash is still an imported legacy one."""
        return await self._store.credentials.list_legacy()

    async def set_account_enabled(self, address: str, enabled: bool) -> str:
        key = _address_key(address)
        await self._call_on_account(key, self._store.set_account_enabled(key, enabled))
        return key

    async def freeze_account(self, address: str, reason: str = "") -> str:
        """No login (any protocol) and no sending until unfrozen; mail is still received."""
        key = _address_key(address)
        reason = " ".join(reason.split())[:500]
        await self._call_on_account(key, self._store.set_account_frozen(key, True, reason))
        await record_admin_event(self._store.credentials, self._clock, key, "account-frozen", reason)
        await self.hold_queued_mail(key)
        return key

    async def hold_queued_mail(self, address: str) -> int:
        """Hold the outgoing mail the account has queued (``hardmail queue release`` lets one go);
        how many. Unfreezing releases nothing: what a thief queued is for the admin to review."""
        key = _address_key(address)
        held = 0
        for entry in await self._store.queue.list_queued():
            if entry.origin_account == key and not entry.held:
                with contextlib.suppress(NotFound):  # delivered or removed meanwhile
                    await self._store.queue.set_held(entry.queue_id, True)
                    held += 1
        if held:
            await record_admin_event(self._store.credentials, self._clock, key, "queued-mail-held",
                                     f"{held} message(s)")
        return held

    async def unfreeze_account(self, address: str) -> str:
        key = _address_key(address)
        await self._call_on_account(key, self._store.set_account_frozen(key, False))
        await record_admin_event(self._store.credentials, self._clock, key, "account-unfrozen")
        return key

    async def remove_account(self, address: str) -> str:
        key = _address_key(address)
        await self._call_on_account(key, self._store.remove_account(key))
        return key

    async def _existing_account(self, address: str) -> str:
        key = _address_key(address)
        if await self._store.get_account(key) is None:
            raise _unknown_account(key)
        return key

    async def _call_on_account(self, key: str, operation: Awaitable[None]) -> None:
        try:
            await operation
        except NotFound:
            raise _unknown_account(key) from None

    def _require_strong(self, password: str, address: str) -> None:
        refusal = check_new_password(password, address, self._auth.password_policy)
        if refusal is not None:
            raise AdminError(f"password refused: {refusal.reason}", refusal.advice)

    async def _hash(self, password: str) -> tuple[str, ScramSecrets]:
        """The Argon2id PHC string and the SCRAM-SHA-256 secrets of a new password."""
        password_hash = await asyncio.to_thread(hash_password, password, self._hash_params)
        scram = await asyncio.to_thread(derive_secrets, password, self._auth.scram.iterations)
        return password_hash, scram

    # aliases

    async def add_alias(self, source: str, targets: list[str], *, allow_missing: bool = False) -> AliasAdded:
        """Refuses a loop always, a target in a hosted domain that matches nothing unless ``allow_missing``."""
        source_key = _alias_source_key(source)
        await self._require_domain(source_key.rpartition("@")[2])
        target_keys = _target_keys(source_key, targets)
        review = await review_new_alias(self._store, Alias(source_key, target_keys), self._plus)
        if review.loop:
            raise _loop_refusal(source_key, review.loop)
        if review.missing and not allow_missing:
            raise _missing_refusal(source_key, review.missing)
        try:
            return AliasAdded(await self._store.add_alias(source_key, target_keys), review.missing)
        except AlreadyExists as exc:
            raise AdminError(
                str(exc), "remove the existing one first, or choose another address"
            ) from None
        except NotFound:
            raise _unknown_domain(source_key.rpartition("@")[2]) from None

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        return await self._store.list_aliases(None if domain is None else _domain_key(domain))

    async def remove_alias(self, source: str) -> str:
        """Returns the removed alias's source in lookup form."""
        source_key = _alias_source_key(source)
        try:
            await self._store.remove_alias(source_key)
        except NotFound:
            raise AdminError(
                f"no alias {source_key}", "`hardmail alias list` shows the aliases"
            ) from None
        return source_key


def _unknown_account(key: str) -> AdminError:
    return AdminError(f"no account {key}", "`hardmail account list` shows the accounts")
