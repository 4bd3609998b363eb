"""The DNS facts spam scoring needs: DNSBL listings, forward-confirmed reverse DNS, whether a HELO name
resolves and whether a sender domain can receive mail. Every look-up goes through the Resolver."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from hardmail.msgauth.dns import Resolver
from hardmail.policy.spam import Finding

MAX_PTR_NAMES = 10  # like RFC 7208 4.6.4's limit for the ptr mechanism


@dataclass(frozen=True, slots=True)
class Blocklist:
    zone: str
    score: int
    expect: tuple[str, ...] = ()


def reversed_name(ip: str) -> str:
    """The address in DNSBL and in-addr.arpa order, without the suffix (RFC 5782 2.1, 2.4)."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.reverse_pointer.rsplit(".", 2)[0]


def _listed(answers: Sequence[str], expect: Sequence[str]) -> bool:
    if expect:
        return any(a in expect for a in answers)
    # RFC 5782 2.1: listings are 127.0.0.0/8; 127.255.255.x is how some lists report query errors
    return any(a.startswith("127.") and not a.startswith("127.255.255.") for a in answers)


async def _one_blocklist(resolver: Resolver, ip: str, blocklist: Blocklist) -> Finding | None:
    answer = await resolver.resolve(f"{reversed_name(ip)}.{blocklist.zone.rstrip('.')}", "A")
    addresses = [r.address for r in answer.records] if answer.ok else []
    if not _listed(addresses, blocklist.expect):
        return None
    return Finding("dnsbl", f"listed in {blocklist.zone} ({', '.join(addresses)})", blocklist.score)


async def dnsbl_findings(resolver: Resolver, ip: str, blocklists: Sequence[Blocklist]) -> list[Finding]:
    """One finding per blocklist that lists ``ip``; look-ups run concurrently."""
    results = await asyncio.gather(*(_one_blocklist(resolver, ip, b) for b in blocklists))
    return [finding for finding in results if finding is not None]


async def addresses_of(resolver: Resolver, name: str) -> set[str] | None:
    """A and AAAA addresses of ``name``; None when a look-up failed temporarily."""
    answers = await asyncio.gather(resolver.resolve(name, "A"), resolver.resolve(name, "AAAA"))
    if any(a.status == "tempfail" for a in answers):
        return None
    return {str(ipaddress.ip_address(r.address)) for a in answers for r in a.records}


async def forward_confirmed_name(resolver: Resolver, ip: str) -> str | None:
    """FCrDNS: a PTR name of ``ip`` whose A/AAAA records include ``ip``, or None."""
    address = ipaddress.ip_address(ip)
    answer = await resolver.resolve(address.reverse_pointer, "PTR")
    for record in answer.records[:MAX_PTR_NAMES]:
        name = str(record.target.to_text(omit_final_dot=True))
        found = await addresses_of(resolver, name)
        if found and str(address) in found:
            return name
    return None


async def domain_accepts_mail(resolver: Resolver, domain: str) -> bool | None:
    """RFC 5321 5.1: the domain has MX records, or A/AAAA ones (implicit MX); None when unknown."""
    mx = await resolver.resolve(domain, "MX")
    if mx.status == "tempfail":
        return None
    if mx.ok:
        return not all(r.exchange.to_text() == "." for r in mx.records)  # RFC 7505 null MX
    found = await addresses_of(resolver, domain)
    return None if found is None else bool(found)
