"""Greylisting decisions: pure functions of a triplet's stored state, the time and the settings.

A triplet is (client network, envelope sender, recipient); the network is the client's /24 (IPv4)
or /64 (IPv6) so that a sender retrying from another address of its farm is recognised. A first
attempt is deferred; a retry after the initial delay confirms the triplet, which then passes
until it has been unused for the confirmed lifetime. Storage and clocks are the caller's.

Automatic whitelisting counts distinct envelope senders, not retries: a client network is whitelisted
once ``auto_whitelist_after`` different senders from it have each confirmed a triplet. One sender
writing to many recipients, or retrying one triplet many times, earns nothing. Each sender that
confirms a triplet is remembered in a sender mark: a row stored like a triplet under the
pseudo-network ``s:<network>`` with recipient ``*``, so the store's count of confirmed rows of that
pseudo-network is the number of distinct senders (and marks expire like confirmed triplets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from hardmail.core.replies import Reply

SENDER_MARK_PREFIX = "s:"  # pseudo-network of sender marks; never a real network in CIDR form
GREYLISTED = Reply(451, "4.7.1", "Greylisted: this server delays first mail from an unknown sender; "
                                 "please retry in a few minutes")


@dataclass(frozen=True, slots=True)
class GreylistSettings:
    initial_delay: float = 300.0
    unconfirmed_lifetime: float = 86400.0
    confirmed_lifetime: float = 36 * 86400.0
    auto_whitelist_after: int = 3  # distinct senders of one network that confirmed a triplet; 0: never
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64


@dataclass(frozen=True, slots=True)
class Triplet:
    network: str
    sender: str  # lower-case; "" for the null reverse-path
    recipient: str

    @property
    def key(self) -> str:
        return f"{self.network}|{self.sender}|{self.recipient}"


@dataclass(frozen=True, slots=True)
class TripletState:
    first_seen: float
    last_seen: float
    expires_at: float
    confirmed: bool = False
    passes: int = 0


@dataclass(frozen=True, slots=True)
class GreylistDecision:
    action: Literal["pass", "defer"]
    state: TripletState
    reason: str
    newly_confirmed: bool = False


def client_network(ip: str, settings: GreylistSettings) -> str:
    """The client's network in CIDR form (/24 for IPv4, /64 for IPv6 by default)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = settings.ipv4_prefix if address.version == 4 else settings.ipv6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def make_triplet(ip: str, sender: str, recipient: str, settings: GreylistSettings) -> Triplet:
    return Triplet(client_network(ip, settings), sender.lower(), recipient.lower())


def decide(state: TripletState | None, now: float, settings: GreylistSettings) -> GreylistDecision:
    """Defer a new or too-early triplet; pass (and confirm) a retry after the initial delay."""
    if state is None or state.expires_at <= now:
        fresh = TripletState(now, now, now + settings.unconfirmed_lifetime)
        return GreylistDecision("defer", fresh, "new triplet")
    if state.confirmed:
        kept = replace(state, last_seen=now, passes=state.passes + 1, expires_at=now + settings.confirmed_lifetime)
        return GreylistDecision("pass", kept, "confirmed triplet")
    if now - state.first_seen < settings.initial_delay:
        return GreylistDecision("defer", replace(state, last_seen=now), "retried before the initial delay")
    confirmed = replace(state, last_seen=now, confirmed=True, passes=1,
                        expires_at=now + settings.confirmed_lifetime)
    return GreylistDecision("pass", confirmed, "retry after the initial delay", newly_confirmed=True)


def sender_mark(triplet: Triplet) -> Triplet:
    """The row that records that ``triplet``'s sender confirmed a triplet from its network."""
    return Triplet(SENDER_MARK_PREFIX + triplet.network, triplet.sender, "*")


def sender_mark_state(now: float, settings: GreylistSettings) -> TripletState:
    """A sender mark's state: confirmed, kept as long as a confirmed triplet."""
    return TripletState(now, now, now + settings.confirmed_lifetime, confirmed=True, passes=1)


def network_earns_whitelist(distinct_senders: int, settings: GreylistSettings) -> bool:
    """Automatic whitelisting: a network from which N distinct senders confirmed a triplet is trusted."""
    return settings.auto_whitelist_after > 0 and distinct_senders >= settings.auto_whitelist_after


def _in_networks(ip: str, entries: Sequence[str]) -> bool:
    address = ipaddress.ip_address(ip)
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True, slots=True)
class BypassFacts:
    ip: str
    sender: str
    recipient_domain: str
    authenticated: bool
    trusted: bool  # the client is in a trusted range
    spf_pass: bool
    network_whitelisted: bool


def bypass_reason(facts: BypassFacts, whitelist: Sequence[str], bypass_spf_pass: bool,
                  greylisted_domains: Sequence[str], exempt_domains: Sequence[str]) -> str | None:
    """Why this attempt skips greylisting, or None. ``whitelist``: addresses, networks or domains."""
    domain = facts.recipient_domain.lower()
    sender_domain = facts.sender.rpartition("@")[2].lower()
    reasons = (
        (facts.authenticated, "authenticated client"),
        (facts.trusted, "trusted network"),
        (domain in {d.lower() for d in exempt_domains}, "greylisting off for the recipient domain"),
        (bool(greylisted_domains) and domain not in {d.lower() for d in greylisted_domains},
         "greylisting not enabled for the recipient domain"),
        (facts.sender.lower() in {w.lower() for w in whitelist if "@" in w}, "whitelisted sender"),
        (bool(sender_domain) and sender_domain in {w.lower() for w in whitelist if "@" not in w and "/" not in w
                                                   and not _is_ip(w)}, "whitelisted sender domain"),
        (_in_networks(facts.ip, [w for w in whitelist if "/" in w or _is_ip(w)]), "whitelisted network"),
        (facts.network_whitelisted, "network whitelisted automatically"),
        (bypass_spf_pass and facts.spf_pass, "SPF pass"),
    )
    return next((reason for applies, reason in reasons if applies), None)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
