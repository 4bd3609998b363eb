"""Relay control and sender ownership: pure decisions, no I/O.

Security invariants (DESIGN.md): a recipient outside our domains is accepted only from an
authenticated session, a trusted network or an IP range whose matrix allows relaying without
AUTH; an authenticated sender may use only the addresses of
its own account and the aliases that point at it, in MAIL FROM and in the From: header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from hardmail.core.address import Address
from hardmail.core.replies import (
    AUTH_REQUIRED,
    RECIPIENT_OK,
    RELAY_DENIED,
    SENDER_NOT_OWNED,
    SENDER_OK,
    TLS_REQUIRED,
    UNKNOWN_RECIPIENT,
    Reply,
)
from hardmail.policy.access import Direction, IpRange, delivery_rule
from hardmail.policy.verdict import Verdict

MAILBOX_DISABLED = Reply(550, "5.2.1", "Recipient mailbox disabled")


@dataclass(frozen=True, slots=True)
class ClientFacts:
    """What the session knows about its client when it decides."""

    ip: str
    listener: str  # "smtp", "submission" or "submissions"
    tls: bool
    account: str | None  # authenticated account address


def in_networks(ip: str, networks: Iterable[str]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client of a dual-stack listener
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def mail_from_verdict(client: ClientFacts, sender: Address | None, sender_owned: bool) -> Verdict:
    """MAIL FROM: submission needs TLS then AUTH; an authenticated sender must own the address."""
    if client.listener != "smtp":
        if not client.tls:
            return Verdict.refuse(TLS_REQUIRED, "submission without TLS")
        if client.account is None:
            return Verdict.refuse(AUTH_REQUIRED, "submission without AUTH")
    if client.account is not None and sender is not None and not sender_owned:
        return Verdict.refuse(SENDER_NOT_OWNED, f"{client.account} may not send as {sender.key}")
    return Verdict.ok(SENDER_OK)


def owns_address(owned: frozenset[str], address: Address, plus_separator: str, tagged_is_taken: bool) -> bool:
    """True for the account's own addresses, its aliases, and their ``+tag`` forms.

    A tagged form counts only while no account or alias of exactly that name exists
    (``tagged_is_taken``): ``john-doe@`` is somebody else's even with ``-`` as separator.
    """
    if address.key in owned:
        return True
    untagged = address.without_tag(plus_separator)
    return untagged is not None and untagged.key in owned and not tagged_is_taken


@dataclass(frozen=True, slots=True)
class RelayRules:
    """What the client's IP range says about deliveries (see :mod:`hardmail.policy.access`)."""

    range: IpRange | None  # the matching range; None keeps the plain rule (relay needs AUTH)
    sender_local: bool = False  # the MAIL FROM domain is one of ours
    trusted: bool = False  # the client is in relay.trusted_networks: relaying needs no AUTH


DELIVERY_NOT_ALLOWED = Reply(550, "5.7.1", "Delivery in this direction is not allowed from your address range")


def rcpt_verdict(client: ClientFacts, resolution_kind: str, rules: RelayRules,
                 reveal_disabled: bool = False) -> Verdict:
    """RCPT TO, in the documented order: delivery allowed, then AUTH required, then recipient known.

    No open relay: a recipient outside our domains needs AUTH unless the range (or a trusted
    network) says otherwise. A disabled account gets the unknown recipient's reply unless
    ``reveal_disabled`` (smtp.reveal_disabled_recipients): only the verdict's reason differs.
    """
    recipient_local = resolution_kind != "remote"
    allowed, auth_required = True, not recipient_local
    if rules.range is not None:
        rule = delivery_rule(rules.range, Direction.of(rules.sender_local, recipient_local))
        allowed, auth_required = rule.allowed, rule.auth_required
    if not allowed:
        return Verdict.refuse(DELIVERY_NOT_ALLOWED, f"range {rules.range and rules.range.name} forbids this direction")
    if auth_required and client.account is None and not rules.trusted:
        if recipient_local:
            return Verdict.refuse(AUTH_REQUIRED, "range requires AUTH for this direction")
        return Verdict.refuse(RELAY_DENIED, "relay denied: not local, not authenticated")
    return _recipient_known(client, resolution_kind, rules, reveal_disabled)


def _recipient_known(client: ClientFacts, resolution_kind: str, rules: RelayRules, reveal_disabled: bool) -> Verdict:
    if resolution_kind == "local":
        return Verdict.ok(RECIPIENT_OK)
    if resolution_kind == "unknown":
        return Verdict.refuse(UNKNOWN_RECIPIENT, "no such local recipient")
    if resolution_kind == "disabled":
        return Verdict.refuse(MAILBOX_DISABLED if reveal_disabled else UNKNOWN_RECIPIENT, "recipient account disabled")
    if client.account is not None:
        return Verdict.ok(RECIPIENT_OK, "relay for authenticated sender")
    if rules.trusted:
        return Verdict.ok(RECIPIENT_OK, "relay for trusted network")
    return Verdict.ok(RECIPIENT_OK, f"relay allowed by range {rules.range and rules.range.name}")
