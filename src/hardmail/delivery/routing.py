"""Where mail for a domain goes: configured routes (and the smarthost) first, else the domain's MX hosts.

MX selection follows RFC 5321 5.1: hosts in preference order, shuffled among equal preferences, the
domain itself as an implicit MX when it has no MX records, and RFC 7505 null MX ("MX 0 .") as an
immediate permanent failure. Each host's IPv6 and IPv4 addresses are looked up (the resolver follows
CNAME chains). DNS trouble is a temporary failure; a domain that does not exist is a permanent one.

An :class:`AddressGuard` keeps MX answers from sending mail to ourselves or to addresses that are not
on the public internet (loopback, unspecified, link-local, multicast, reserved; private ranges when
configured) and refuses MX records that name an IP address: such hosts are skipped, and when no
host is left the mail fails with 5.4.4 (RFC 5321 5.1: "loops back to myself"). Routes configured by
the administrator are not checked.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from hardmail.msgauth.dns import DnsAnswer, Resolver
from hardmail.store.ports_queue import Route

Shuffle = Callable[[list["MxHost"]], None]


class RoutingError(Exception):
    """No destination could be found; ``temporary`` says whether a later attempt may succeed."""

    def __init__(self, text: str, *, temporary: bool, status: str) -> None:
        super().__init__(text)
        self.text = text
        self.temporary = temporary
        self.status = status  # RFC 3463 enhanced status code for the DSN


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str
    preference: int
    addresses: tuple[str, ...] = ()
    authenticated: bool = False  # the address answer was DNSSEC-validated (RFC 7672 2.2)


@dataclass(frozen=True, slots=True)
class Destination:
    domain: str
    hosts: tuple[MxHost, ...]
    port: int
    route: Route | None = None  # set when a configured route (or the smarthost "*") applies
    mx_authenticated: bool = False  # the MX answer was DNSSEC-validated (RFC 7672 2.2.1)


def route_for(routes: Sequence[Route], domain: str) -> Route | None:
    """The most specific route: an exact domain, then the longest ``*.parent``, then ``*``."""
    by_pattern = {route.pattern: route for route in routes}
    if domain in by_pattern:
        return by_pattern[domain]
    labels = domain.split(".")
    for start in range(1, len(labels)):
        found = by_pattern.get("*." + ".".join(labels[start:]))
        if found is not None:
            return found
    return by_pattern.get("*")


def is_null_mx(answer: DnsAnswer) -> bool:
    # RFC 7505 3: a single MX record with preference 0 and the root as exchange.
    return any(str(record.exchange) == "." for record in answer.records)


def order_mx(hosts: list[MxHost], shuffle: Shuffle = random.shuffle) -> list[MxHost]:
    """Preference order; equal preferences in random order (RFC 5321 5.1)."""
    ordered: list[MxHost] = []
    for preference in sorted({host.preference for host in hosts}):
        same = [host for host in hosts if host.preference == preference]
        shuffle(same)
        ordered.extend(same)
    return ordered


@dataclass(frozen=True, slots=True)
class AddressGuard:
    """Which MX addresses are refused: our own listeners always, non-public ones when switched on."""

    refuse_non_public: bool = True
    refuse_private: bool = False
    own: Collection[str] = field(default_factory=frozenset)  # our listener IP addresses

    def refusal(self, address: str) -> str | None:
        """Why mail must not go to ``address``, or None."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if str(ip) in self.own:
            return "loops back to myself"
        if self.refuse_non_public and (ip.is_loopback or ip.is_unspecified or ip.is_link_local
                                       or ip.is_multicast or ip.is_reserved):
            return "is a non-public address"
        if self.refuse_private and ip.is_private:
            return "is a private address"
        return None


NO_GUARD = AddressGuard(refuse_non_public=False)


class Router:
    """Turns a recipient domain into a :class:`Destination`; routes come from the queue store."""

    def __init__(self, resolver: Resolver, mx_port: int = 25, shuffle: Shuffle = random.shuffle,
                 guard: AddressGuard = NO_GUARD) -> None:
        self.resolver = resolver
        self.mx_port = mx_port
        self.shuffle = shuffle
        self.guard = guard

    async def destination(self, domain: str, routes: Sequence[Route] = ()) -> Destination:
        route = route_for(routes, domain)
        if route is not None:
            host = await self._host(route.host, 0)
            return Destination(domain, (host,), route.port, route)
        return await self._mx_destination(domain)

    async def _mx_destination(self, domain: str) -> Destination:
        answer = await self.resolver.resolve(domain, "MX")
        if answer.status == "tempfail":
            raise RoutingError(f"MX lookup for {domain} failed: {answer.detail}", temporary=True, status="4.4.3")
        if answer.status == "nxdomain":
            raise RoutingError(f"domain {domain} does not exist", temporary=False, status="5.1.2")
        if answer.ok and is_null_mx(answer):
            # RFC 7505 4.1: no delivery at all; RFC 7505 4.2: 5.1.10
            raise RoutingError(f"{domain} accepts no mail (null MX)", temporary=False, status="5.1.10")
        if answer.ok:
            names = [MxHost(str(r.exchange).rstrip(".").lower(), int(r.preference)) for r in answer.records]
        else:
            names = [MxHost(domain, 0)]  # RFC 5321 5.1: implicit MX
        hosts = await self._resolve_hosts(order_mx(names, self.shuffle))
        return Destination(domain, hosts, self.mx_port, None, answer.authenticated)

    async def _resolve_hosts(self, names: list[MxHost]) -> tuple[MxHost, ...]:
        hosts: list[MxHost] = []
        trouble: list[RoutingError] = []
        for name in names:
            try:
                hosts.append(await self._guarded_host(name))
            except RoutingError as exc:
                trouble.append(exc)
        if not hosts:
            temporary = any(exc.temporary for exc in trouble)
            raise RoutingError("; ".join(exc.text for exc in trouble) or "no MX host", temporary=temporary,
                               status="4.4.4" if temporary else "5.4.4")
        return tuple(hosts)

    async def _guarded_host(self, name: MxHost) -> MxHost:
        """An MX host with only the addresses the guard allows; RoutingError (permanent) when none is left."""
        if self.guard.refuse_non_public and _is_ip(name.name):
            raise RoutingError(f"refusing to deliver to MX {name.name}: an MX must name a host, not an address",
                               temporary=False, status="5.4.4")
        host = await self._host(name.name, name.preference)
        refusals = {a: self.guard.refusal(a) for a in host.addresses}
        allowed = tuple(a for a, why in refusals.items() if why is None)
        if allowed:
            return MxHost(host.name, host.preference, allowed, host.authenticated)
        reasons = sorted({why for why in refusals.values() if why})
        if "loops back to myself" in reasons:
            raise RoutingError(f"mail for {host.name} loops back to myself", temporary=False, status="5.4.4")
        raise RoutingError(f"refusing to deliver to a non-public address ({host.name} {', '.join(reasons)})",
                           temporary=False, status="5.4.4")

    async def _host(self, name: str, preference: int) -> MxHost:
        """The host with its addresses: IPv6 first, then IPv4; an IP literal is used as it is."""
        if _is_ip(name):
            return MxHost(name, preference, (name,))
        answers = [await self.resolver.resolve(name, rdtype) for rdtype in ("AAAA", "A")]
        addresses = tuple(str(r.address) for a in answers if a.ok for r in a.records if hasattr(r, "address"))
        if addresses:
            return MxHost(name, preference, addresses, any(a.ok and a.authenticated for a in answers))
        if any(a.status == "tempfail" for a in answers):
            raise RoutingError(f"address lookup for {name} failed", temporary=True, status="4.4.3")
        raise RoutingError(f"host {name} has no address", temporary=False, status="5.4.4")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
