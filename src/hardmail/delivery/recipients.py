"""Recipient resolution: which local mailboxes and remote addresses an envelope recipient means.

Order for an address in one of our domains: exact account, exact alias, the address without its
``+tag`` (plus addressing), then the domain's catch-all (``@domain``). Aliases expand recursively,
bounded and cycle-safe. Addresses outside our domains resolve to themselves as remote.

A disabled account ends the search (kind ``disabled``), unless ``disabled_as_unknown``: then it
counts as absent and the search goes on exactly as for an unknown address (same look-ups, same
catch-all), so that neither the reply nor the time it takes tells a disabled account from a
missing one; the kind is still ``disabled`` when nothing else matched, for the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from hardmail.core.address import Address, AddressError, parse_mailbox
from hardmail.store.ports import AccountStore, AliasStore, DomainStore

MAX_ALIAS_DEPTH = 8

Kind = Literal["local", "remote", "unknown", "disabled"]


class RecipientStore(DomainStore, AccountStore, AliasStore, Protocol):
    """The part of the store recipient resolution reads."""


@dataclass(frozen=True, slots=True)
class Resolution:
    kind: Kind
    mailboxes: tuple[str, ...] = ()  # local account addresses
    remote: tuple[str, ...] = ()  # addresses outside our domains


@dataclass
class _Expansion:
    mailboxes: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    disabled: bool = False
    disabled_as_unknown: bool = False  # a disabled account does not end the search


async def is_local_domain(store: DomainStore, domain: str) -> bool:
    record = await store.get_domain(domain)
    return record is not None and record.enabled


async def resolve_recipient(store: RecipientStore, address: Address, plus_separator: str = "+",
                            disabled_as_unknown: bool = False) -> Resolution:
    if not await is_local_domain(store, address.domain):
        return Resolution("remote", remote=(address.key,))
    expansion = _Expansion(disabled_as_unknown=disabled_as_unknown)
    await _expand(store, address, plus_separator, expansion, 0)
    if expansion.mailboxes or expansion.remote:
        return Resolution("local", tuple(dict.fromkeys(expansion.mailboxes)), tuple(dict.fromkeys(expansion.remote)))
    # Nothing delivers: a disabled account was met (directly or through an alias) or nothing matched.
    return Resolution("disabled" if expansion.disabled else "unknown")


async def _expand(store: RecipientStore, address: Address, plus: str, out: _Expansion, depth: int) -> bool:
    """Add what ``address`` (in a local domain) delivers to; False when nothing matches it."""
    if depth > MAX_ALIAS_DEPTH or address.key in out.seen:
        return True
    out.seen.add(address.key)
    candidates = [address.key]
    untagged = address.without_tag(plus)
    if untagged is not None:
        candidates.append(untagged.key)
    candidates.append(f"@{address.domain}")
    for key in candidates:
        if await _expand_key(store, key, plus, out, depth):
            return True
    return False


async def _expand_key(store: RecipientStore, key: str, plus: str, out: _Expansion, depth: int) -> bool:
    if not key.startswith("@"):
        account = await store.get_account(key)
        if account is not None:
            if account.enabled:
                out.mailboxes.append(account.address)
                return True
            out.disabled = True
            if not out.disabled_as_unknown:
                return True
    alias = await store.get_alias(key)
    if alias is None or not alias.enabled:
        return False
    for target in alias.targets:
        await _expand_target(store, target, plus, out, depth + 1)
    return True


async def _expand_target(store: RecipientStore, target: str, plus: str, out: _Expansion, depth: int) -> None:
    try:
        address = parse_mailbox(target, utf8=True)
    except AddressError:
        return
    if await is_local_domain(store, address.domain):
        await _expand(store, address, plus, out, depth)
    else:
        out.remote.append(address.key)


async def owned_addresses(store: RecipientStore, account: str) -> frozenset[str]:
    """The account's address and every (non catch-all) alias that points at it."""
    aliases = await store.aliases_targeting(account)
    return frozenset([account, *(a.source for a in aliases if not a.is_catch_all and a.enabled)])
