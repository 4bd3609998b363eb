"""DNS look-ups behind one small Protocol, so every DNS-dependent path takes an injected resolver.

``DnsPythonResolver`` asks real servers (dnspython's async resolver; the system's resolv.conf or the
``[dns]`` nameservers); ``StaticResolver`` answers from a table for unit tests. Answers carry
dnspython rdata objects (``rdata.preference``, ``rdata.exchange``, ``rdata.strings``, ...), a status
that separates "no such name" from "no data" from "try again later", and the DNSSEC AD flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

Status = Literal["ok", "nxdomain", "nodata", "tempfail"]


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    status: Status
    records: tuple[Any, ...] = ()  # dnspython rdata objects
    authenticated: bool = False  # the resolver set the AD bit (RFC 4035 3.2.3)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.records)

    def texts(self) -> list[str]:
        """TXT records with their character-strings joined (RFC 7208 3.3)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.records if hasattr(r, "strings")]


class Resolver(Protocol):
    async def resolve(self, name: str, rdtype: str) -> DnsAnswer: ...


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


class DnsPythonResolver:
    """A real resolver; ``nameservers`` empty means the system configuration."""

    def __init__(self, nameservers: Iterable[str] = (), port: int = 53, timeout: float = 5.0) -> None:
        servers = list(nameservers)
        self._resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = servers
        self._resolver.port = port
        self._resolver.lifetime = timeout
        self._resolver.timeout = timeout
        self._resolver.use_edns(0, dns.flags.DO, 1232)
        self._resolver.flags = dns.flags.RD | dns.flags.AD

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            answer = await self._resolver.resolve(_absolute(name), rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return DnsAnswer("nxdomain")
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            # RFC 1035 2.3.4: no such name can exist (e.g. "_dmarc." before a 250-character name):
            # answered as a name that does not exist, never as a temporary error that could be
            # retried and that would keep a policy at a parent domain from being applied
            return DnsAnswer("nxdomain", detail=type(exc).__name__)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            return DnsAnswer("tempfail", detail=type(exc).__name__)
        except dns.exception.DNSException as exc:
            return DnsAnswer("tempfail", detail=f"{type(exc).__name__}: {exc}"[:200])
        records = tuple(answer.rrset) if answer.rrset is not None else ()
        authenticated = bool(answer.response.flags & dns.flags.AD)
        return DnsAnswer("ok" if records else "nodata", records, authenticated)


@dataclass
class StaticResolver:
    """Answers from a table: ``{("name", "TXT"): ["v=spf1 -all"], ("x", "A"): "NXDOMAIN" | "TIMEOUT"}``.

    Names are compared case-insensitively without the trailing dot. A name that appears with any
    type answers "nodata" for other types; an unknown name answers "nxdomain".
    """

    zone: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    authenticated: bool = False
    queries: list[tuple[str, str]] = field(default_factory=list)

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        self.queries.append(key)
        entries = {(n.rstrip(".").lower(), t.upper()): v for (n, t), v in self.zone.items()}
        value = entries.get(key)
        if value == "TIMEOUT":
            return DnsAnswer("tempfail", detail="timeout")
        if value == "NXDOMAIN" or (value is None and not any(n == key[0] for n, _ in entries)):
            return DnsAnswer("nxdomain")
        if not value:
            return DnsAnswer("nodata")
        rdtype_value = dns.rdatatype.from_text(key[1])
        records = tuple(dns.rdata.from_text(dns.rdataclass.IN, rdtype_value, text) for text in value)
        return DnsAnswer("ok", records, self.authenticated)
