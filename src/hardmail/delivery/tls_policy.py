"""How a connection to a destination must be secured: opportunistic STARTTLS, MTA-STS or DANE.

* MTA-STS (RFC 8461): the ``_mta-sts`` TXT record names a policy id; the policy is fetched over
  HTTPS from ``mta-sts.<domain>`` (certificate verified, no redirects), cached for its ``max_age``
  and refetched when the id changes. In ``enforce`` mode only MX hosts matching the policy are
  used, and only over TLS with a certificate valid for the MX name.
* DANE (RFC 7672): TLSA records at ``_<port>._tcp.<mx host>`` are used only when the resolver says
  the answer is DNSSEC-validated. DANE-EE (usage 3) and DANE-TA (usage 2) records are usable and
  checked after the handshake (see ``hardmail.delivery.dane``); other usages count as unusable,
  which still requires TLS (RFC 7672 2.2). When the MX host's address was DNSSEC-validated but its
  TLSA lookup fails (SERVFAIL, timeout), the host is unusable (RFC 7672 2.2).
  DANE takes precedence over MTA-STS (RFC 8461 2).
Under a policy, a TLS failure is a temporary failure; there is never a fallback to plaintext.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.core.clock import Clock
from hardmail.msgauth.dns import Resolver
from hardmail.ops.log import log_event

StartTls = Literal["never", "try", "require"]
Verify = Literal["none", "pkix", "dane"]
StsMode = Literal["enforce", "testing", "none"]
MAX_POLICY_AGE = 31_557_600  # RFC 8461 3.2: max_age is at most one year
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.3: senders may limit the policy size


class PolicyError(Exception):
    """A policy could not be fetched or parsed; the text is safe to log."""


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class TlsPlan:
    starttls: StartTls = "try"
    verify: Verify = "none"
    implicit: bool = False
    tlsa: tuple[Tlsa, ...] = ()
    reason: str = "opportunistic"

    @property
    def enforced(self) -> bool:
        return self.starttls == "require" or self.implicit


OPPORTUNISTIC = TlsPlan()


@dataclass(frozen=True, slots=True)
class StsPolicy:
    policy_id: str
    mode: StsMode
    mx: tuple[str, ...]
    max_age: int
    fetched_at: float

    def expires_at(self) -> float:
        return self.fetched_at + self.max_age

    def allows(self, mx_host: str) -> bool:
        return any(mx_matches(pattern, mx_host) for pattern in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: exact match, or ``*.`` matching exactly one leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def parse_sts_record(texts: list[str]) -> str | None:
    """The ``id`` of the single ``v=STSv1`` TXT record (RFC 8461 3.1), or None."""
    records = [t for t in texts if t.replace(" ", "").startswith("v=STSv1;")]
    if len(records) != 1:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in records[0].split(";") if "=" in part)
    policy_id = fields.get("id", "").strip()
    return policy_id if policy_id.isalnum() and len(policy_id) <= 32 else None


def parse_sts_policy(text: str, policy_id: str, now: float) -> StsPolicy:
    """The policy file (RFC 8461 3.2): ``key: value`` lines; raises PolicyError."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    mode = (values.get("mode") or [""])[0]
    if (values.get("version") or [""])[0] != "STSv1" or mode not in ("enforce", "testing", "none"):
        raise PolicyError("policy has no valid version or mode")
    try:
        max_age = min(int((values.get("max_age") or [""])[0]), MAX_POLICY_AGE)
    except ValueError:
        raise PolicyError("policy has no valid max_age") from None
    mx = tuple(values.get("mx", []))
    if mode != "none" and not mx:
        raise PolicyError("policy lists no mx")
    return StsPolicy(policy_id, mode, mx, max_age, now)  # type: ignore[arg-type]


class PolicyCache(Protocol):
    async def get_setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str) -> None: ...


def verified_context(ca_file: Path | None) -> ssl.SSLContext:
    """Certificate and host name checked against the system CAs (plus ``ca_file``); TLS 1.2 or newer."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def unverified_context() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encryption without authentication; DANE checks come after."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class PolicyFetcher:
    """Fetches ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (RFC 8461 3.3)."""

    def __init__(self, resolver: Resolver, ca_file: Path | None = None, port: int = 443, timeout: float = 30.0) -> None:
        self.resolver = resolver
        self.ca_file = ca_file
        self.port = port
        self.timeout = timeout

    async def fetch(self, domain: str) -> str:
        host = f"mta-sts.{domain}"
        address = await self._address(host)
        url = f"https://{_url_host(address)}:{self.port}/.well-known/mta-sts.txt"
        try:
            async with httpx.AsyncClient(verify=verified_context(self.ca_file), timeout=self.timeout,
                                         follow_redirects=False) as client:
                # Connect to the address our resolver gave, but verify and ask for the policy host.
                body = await _fetch_limited(client, url, host, domain)
        except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
            raise PolicyError(f"fetching the MTA-STS policy of {domain} failed: {exc}"[:300]) from exc
        return body.decode("utf-8", "replace")

    async def _address(self, host: str) -> str:
        for rdtype in ("A", "AAAA"):
            answer = await self.resolver.resolve(host, rdtype)
            if answer.ok:
                return str(answer.records[0].address)
        raise PolicyError(f"{host} has no address")


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _check_response(response: httpx.Response, domain: str) -> None:
    if response.status_code != 200:  # RFC 8461 3.3: redirects are not followed
        raise PolicyError(f"MTA-STS policy of {domain}: HTTP {response.status_code}")
    if response.headers.get("content-type", "").split(";")[0].strip().lower() != "text/plain":
        raise PolicyError(f"MTA-STS policy of {domain} is not text/plain")


async def _fetch_limited(client: httpx.AsyncClient, url: str, host: str, domain: str) -> bytes:
    async with client.stream("GET", url, headers={"Host": host}, extensions={"sni_hostname": host}) as response:
        _check_response(response, domain)
        return await _limited_body(response, domain)


async def _limited_body(response: httpx.Response, domain: str) -> bytes:
    """The body, read in pieces and abandoned as soon as it passes ``MAX_POLICY_BYTES`` (RFC 8461 3.3)."""
    body = bytearray()
    async for piece in response.aiter_bytes():
        body += piece
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyError(f"MTA-STS policy of {domain} is too large")
    return bytes(body)


class Fetcher(Protocol):
    async def fetch(self, domain: str) -> str: ...


class MtaSts:
    """Finds the MTA-STS policy of a domain, using the cache when the TXT id has not changed."""

    def __init__(self, resolver: Resolver, fetcher: Fetcher, clock: Clock, cache: PolicyCache) -> None:
        self.resolver = resolver
        self.fetcher = fetcher
        self.clock = clock
        self.cache = cache

    async def policy(self, domain: str) -> StsPolicy | None:
        now = self.clock.now()
        cached = await self._cached(domain, now)
        answer = await self.resolver.resolve(f"_mta-sts.{domain}", "TXT")
        policy_id = parse_sts_record(answer.texts()) if answer.ok else None
        if policy_id is None or (cached is not None and cached.policy_id == policy_id):
            return cached  # RFC 8461 5.1: a valid cached policy stays in force without a record
        try:
            fresh = parse_sts_policy(await self.fetcher.fetch(domain), policy_id, now)
        except PolicyError as exc:
            log_event("mta_sts.fetch", level="warning", domain=domain, result="failure", detail=str(exc))
            return cached
        await self.cache.set_setting(_cache_key(domain), json.dumps(asdict(fresh)))
        log_event("mta_sts.fetch", domain=domain, result="success", mode=fresh.mode, policy_id=policy_id)
        return fresh

    async def _cached(self, domain: str, now: float) -> StsPolicy | None:
        raw = await self.cache.get_setting(_cache_key(domain))
        if raw is None:
            return None
        try:
            data: dict[str, Any] = json.loads(raw)
            policy = StsPolicy(data["policy_id"], data["mode"], tuple(data["mx"]), int(data["max_age"]),
                               float(data["fetched_at"]))
        except (ValueError, KeyError, TypeError):
            return None
        return policy if policy.expires_at() > now else None


def _cache_key(domain: str) -> str:
    return f"mta-sts/{domain}"


@dataclass(frozen=True, slots=True)
class TlsaLookup:
    applies: bool  # DNSSEC-validated TLSA records exist
    usable: tuple[Tlsa, ...] = ()  # the DANE-EE and DANE-TA records among them (RFC 7672 3.1)
    failed: bool = False  # the lookup itself failed (SERVFAIL, timeout): not the same as "no records"


async def tlsa_lookup(resolver: Resolver, host: str, port: int) -> TlsaLookup:
    """The TLSA records of ``host``; DANE applies only to a DNSSEC-validated answer."""
    answer = await resolver.resolve(f"_{port}._tcp.{host}", "TLSA")
    if not (answer.ok and answer.authenticated):
        return TlsaLookup(False, failed=answer.status == "tempfail")
    usable = tuple(Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert)) for r in answer.records
                   if int(r.usage) in (2, 3) and int(r.selector) in (0, 1) and int(r.mtype) in (0, 1, 2))
    return TlsaLookup(True, usable)


async def tlsa_records(resolver: Resolver, host: str, port: int) -> tuple[bool, tuple[Tlsa, ...]]:
    """(DANE applies, usable DANE-EE and DANE-TA records) for ``host``; DANE needs a DNSSEC-validated answer."""
    found = await tlsa_lookup(resolver, host, port)
    return found.applies, found.usable


def tlsa_matches(records: tuple[Tlsa, ...], certificate_der: bytes) -> bool:
    """RFC 6698 2.1 selector/matching type against the server's end-entity certificate (RFC 7672 3.1.1)."""
    certificate = x509.load_der_x509_certificate(certificate_der)
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for record in records:
        selected = certificate_der if record.selector == 0 else spki
        digest = {0: selected, 1: hashlib.sha256(selected).digest(), 2: hashlib.sha512(selected).digest()}
        if digest[record.mtype] == record.data:
            return True
    return False
