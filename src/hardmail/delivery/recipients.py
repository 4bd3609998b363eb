"""Recipient resolution: which local mailboxes and remote addresses an envelope recipient means.

Order for an address in one of our domains: exact account, exact alias, the address without its
``+tag`` (plus addressing), then the domain's catch-all (``@domain``). Aliases expand recursively,
bounded and cycle-safe. Addresses outside our domains resolve to themselves as remote.

A disabled account ends the search (kind ``disabled``), unless ``disabled_as_unknown``: then it
counts as absent and the search goes on exactly as for an unknown address (same look-ups, same
catch-all), so that neither the reply nor the time it takes tells a disabled account from a
missing one; the kind is still ``disabled`` when nothing else matched, for the log.

:func:`first_match` is the one step of that order; delivery (:func:`resolve_recipient`) and the
admin's check of a new alias (:func:`review_new_alias`: loops, targets that match nothing) both
walk with it, so that what the check refuses is exactly what delivery would do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from hardmail.core.address import Address, AddressError, parse_mailbox
from hardmail.store.ports import Account, AccountStore, Alias, AliasStore, Domain, DomainStore

MAX_ALIAS_DEPTH = 8

Kind = Literal["local", "remote", "unknown", "disabled"]


class RecipientStore(DomainStore, AccountStore, AliasStore, Protocol):
    """The part of the store recipient resolution reads."""


class HopStore(Protocol):
    """The look-ups one step of resolution makes."""

    async def get_domain(self, name: str) -> Domain | None: ...

    async def get_account(self, address: str) -> Account | None: ...

    async def get_alias(self, source: str) -> Alias | None: ...


@dataclass(frozen=True, slots=True)
class Hop:
    """What an address matched: an account, or an alias (whose targets are the next step)."""

    key: str  # the account address or alias source that matched
    account: Account | None = None
    alias: Alias | None = None


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


async def is_local_domain(store: HopStore | DomainStore, domain: str) -> bool:
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
    def mark_disabled(_account: Account) -> None:
        out.disabled = True

    hop = await first_match(store, address, plus, on_disabled=mark_disabled if out.disabled_as_unknown else None)
    if hop is None:
        return False
    if hop.account is not None:
        if hop.account.enabled:
            out.mailboxes.append(hop.account.address)
        else:
            out.disabled = True
        return True
    assert hop.alias is not None
    for target in hop.alias.targets:
        await _expand_target(store, target, plus, out, depth + 1)
    return True


async def first_match(store: HopStore, address: Address, plus: str = "+",
                      on_disabled: Callable[[Account], None] | None = None) -> Hop | None:
    """The first account or enabled alias ``address`` (in a local domain) matches, in the order of
    the module docstring; None when nothing does. One step: the alias's targets are not followed.
    With ``on_disabled``, a disabled account is reported to it and skipped (the search goes on with
    exactly the look-ups of an unknown address)."""
    candidates = [address.key]
    untagged = address.without_tag(plus)
    if untagged is not None:
        candidates.append(untagged.key)
    candidates.append(f"@{address.domain}")
    for key in candidates:
        if not key.startswith("@"):
            account = await store.get_account(key)
            if account is not None:
                if account.enabled or on_disabled is None:
                    return Hop(key, account=account)
                on_disabled(account)  # counted as absent: the search goes on as for an unknown key
        alias = await store.get_alias(key)
        if alias is not None and alias.enabled:
            return Hop(key, alias=alias)
    return None


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


# Checking a new alias before it is stored


Edge = tuple[str, str, str]  # (alias source, one of its targets, the alias source that target matches)


@dataclass(frozen=True, slots=True)
class AliasReview:
    loop: tuple[Edge, ...] = ()  # the steps of a loop the alias would be part of (or lead into)
    missing: tuple[str, ...] = ()  # its targets in a local domain that match no account or alias


class _WithAlias:
    """``store`` as it would be with ``alias`` added."""

    def __init__(self, store: HopStore, alias: Alias) -> None:
        self._store, self._alias = store, alias

    async def get_domain(self, name: str) -> Domain | None:
        return await self._store.get_domain(name)

    async def get_account(self, address: str) -> Account | None:
        return await self._store.get_account(address)

    async def get_alias(self, source: str) -> Alias | None:
        return self._alias if source == self._alias.source else await self._store.get_alias(source)


async def review_new_alias(store: HopStore, alias: Alias, plus: str = "+") -> AliasReview:
    """Walk every alias reachable from ``alias`` (as if it were stored) with :func:`first_match`.
    Only the new alias's own targets are checked for matching nothing; any loop reachable is found."""
    view = _WithAlias(store, alias)
    graph: dict[str, list[tuple[str, str]]] = {}
    missing: list[str] = []
    pending = [alias.source]
    while pending:
        source = pending.pop()
        if source in graph:
            continue
        current = await view.get_alias(source)
        edges = graph[source] = []
        for target in current.targets if current is not None else ():
            hop = await _target_hop(view, target, plus)
            if hop == "remote":
                continue
            if hop is None:
                if source == alias.source:
                    missing.append(target)
            elif hop.alias is not None:
                edges.append((target, hop.key))
                pending.append(hop.key)
    return AliasReview(find_loop(graph, alias.source), tuple(missing))


async def _target_hop(store: HopStore, target: str, plus: str) -> Hop | Literal["remote"] | None:
    try:
        address = parse_mailbox(target, utf8=True)
    except AddressError:
        return None
    if not await is_local_domain(store, address.domain):
        return "remote"
    return await first_match(store, address, plus)


def find_loop(graph: Mapping[str, Sequence[tuple[str, str]]], start: str) -> tuple[Edge, ...]:
    """A loop reachable from ``start`` in ``graph`` (alias source -> its (target, alias source the
    target matches) pairs), as its steps from the first alias on it back to that alias; () when
    there is none. Pure; an iterative depth-first search, linear in the size of the graph."""
    nodes = [start]  # the current path; path[i] is the step from nodes[i] to nodes[i + 1]
    path: list[Edge] = []
    on_path = {start: 0}
    done: set[str] = set()
    stack = [iter(graph.get(start, ()))]
    while stack:
        step = next(stack[-1], None)
        if step is None:  # every step out of nodes[-1] explored: no loop through it
            left = nodes.pop()
            done.add(left)
            del on_path[left]
            stack.pop()
            if path:
                path.pop()
            continue
        target, reached = step
        if reached in on_path:
            return (*path[on_path[reached]:], (nodes[-1], target, reached))
        if reached not in done:
            path.append((nodes[-1], target, reached))
            on_path[reached] = len(nodes)
            nodes.append(reached)
            stack.append(iter(graph.get(reached, ())))
    return ()
