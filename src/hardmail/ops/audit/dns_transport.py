"""The transport-security records of the DNS checks (MTA-STS, TLS-RPT, DANE), and what every DNS
check shares: the run's shared look-ups (:class:`Lookups`) and one finding from per-item results.

Part of :mod:`hardmail.ops.audit.checks_dns` (which lists these checks in its ``CHECKS``); kept apart
only to keep each module small. MTA-STS policy files are fetched only through an injected fetcher.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.config.schema import Config
from hardmail.delivery.dane import DANE_EE, DANE_TA, record_matches
from hardmail.delivery.tls_policy import Fetcher, PolicyError, Tlsa, parse_sts_policy, parse_sts_record
from hardmail.msgauth.dns import DnsAnswer, Resolver
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.server.tls import SELF_SIGNED_CERT, TlsError, hostname_matches, read_leaf_certificate

OK, LOW, MEDIUM, HIGH = Severity.OK, Severity.LOW, Severity.MEDIUM, Severity.HIGH
Line = tuple[Severity, str]
DANE_PORT = 25  # RFC 7672 2.2.1: TLSA records of SMTP are at _25._tcp.<MX host>

MTA_STS = CheckInfo(
    "dns.mta_sts", 3, "MTA-STS record well-formed",
    "MTA-STS (RFC 8461) makes senders require verified TLS to the MX hosts; a malformed _mta-sts record "
    "is ignored, and a policy that does not list the MX hosts makes enforcing senders refuse to deliver.",
    "publish _mta-sts.DOMAIN TXT \"v=STSv1; id=<new id>\" and the policy at "
    "https://mta-sts.DOMAIN/.well-known/mta-sts.txt listing every MX host")
TLSRPT = CheckInfo(
    "dns.tlsrpt", 3, "TLS reporting (TLS-RPT) requested",
    "With a _smtp._tls record (RFC 8460) senders report failed TLS connections to this server, so an "
    "expired certificate or a downgrade attack is noticed.",
    "publish _smtp._tls.DOMAIN TXT \"v=TLSRPTv1; rua=mailto:postmaster@DOMAIN\"")
DANE = CheckInfo(
    "dns.dane", 3, "DANE TLSA records match our certificate",
    "Senders that use DANE (RFC 7672) refuse to deliver when no TLSA record at _25._tcp.MX matches the "
    "certificate the server presents: a certificate or key changed without its TLSA record stops mail.",
    "publish a TLSA 3 1 1 record with the SHA-256 of the certificate's public key, or remove stale records")


class Lookups:
    """``ctx.resolver`` with every answer shared within one run and a deadline on each look-up."""

    def __init__(self, resolver: Resolver, timeout: float) -> None:
        self._resolver = resolver
        self._timeout = timeout
        self._answers: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = {}

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        key = (name.rstrip(".").lower(), rdtype.upper())
        if key not in self._answers:
            self._answers[key] = asyncio.ensure_future(self._ask(*key))
        return await asyncio.shield(self._answers[key])

    async def _ask(self, name: str, rdtype: str) -> DnsAnswer:
        try:
            return await asyncio.wait_for(self._resolver.resolve(name, rdtype), self._timeout)
        except TimeoutError:
            return DnsAnswer("tempfail", detail=f"no answer within {self._timeout:g} s")


def verdict(check: CheckInfo, lines: Sequence[Line], target: str, fix: str | None = None) -> Finding:
    """One finding from per-item results: the worst severity, the evidence of the items not ok."""
    bad = [(severity, text) for severity, text in lines if severity is not OK]
    if not bad:
        return check.ok("; ".join(text for _, text in lines), target=target)
    severity = min((s for s, _ in bad), key=lambda s: s.rank)
    return check.finding(severity, "; ".join(text for _, text in bad), fix, target=target,
                         details=tuple(text for _, text in lines))


def lookup_failed(what: str, answer: DnsAnswer) -> str:
    return f"the look-up of {what} failed ({answer.detail or 'temporary failure'}); other servers may fail too"


# ----- MTA-STS and TLS-RPT -------------------------------------------------------------------------------

async def mta_sts(ctx: AuditContext, dns: Lookups, domain: str, our_mx: Sequence[str],
                  fetcher: Fetcher | None) -> Finding:
    name = f"_mta-sts.{domain}"
    answer = await dns.resolve(name, "TXT")
    if answer.status == "tempfail":
        return MTA_STS.finding(MEDIUM, lookup_failed(f"TXT {name}", answer), target=domain)
    texts = [t for t in answer.texts() if t.replace(" ", "").lower().startswith("v=sts")]
    if not texts:
        return MTA_STS.finding(LOW, f"no MTA-STS record at {name}: senders cannot require TLS to this server "
                                    "(optional; it needs a web server for mta-sts." + domain + ")", target=domain)
    policy_id = parse_sts_record(answer.texts())
    if policy_id is None:
        return MTA_STS.finding(MEDIUM, f"{name} is not well-formed ({' | '.join(texts)}): exactly one record "
                                       "\"v=STSv1; id=<1-32 letters and digits>\" is needed", target=domain)
    if fetcher is None:
        return MTA_STS.ok(f"{name}: v=STSv1; id={policy_id}; policy file not fetched (the audit does not "
                          f"connect to https://mta-sts.{domain})", target=domain)
    return await _sts_policy(ctx, domain, policy_id, our_mx, fetcher)


async def _sts_policy(ctx: AuditContext, domain: str, policy_id: str, our_mx: Sequence[str],
                      fetcher: Fetcher) -> Finding:
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    try:
        policy = parse_sts_policy(await asyncio.wait_for(fetcher.fetch(domain), ctx.timeout), policy_id,
                                  ctx.clock.now())
    except PolicyError as exc:
        return MTA_STS.finding(MEDIUM, f"the policy {url} is not usable: {exc}", target=domain)
    except (OSError, TimeoutError) as exc:
        return MTA_STS.finding(MEDIUM, f"the policy {url} could not be fetched ({type(exc).__name__})", target=domain)
    uncovered = [mx for mx in our_mx if not policy.allows(mx)]
    seen = f"{url}: mode {policy.mode}, mx {', '.join(policy.mx) or '(none)'}"
    if uncovered:
        severity = HIGH if policy.mode == "enforce" else MEDIUM
        return MTA_STS.finding(severity, f"{seen}: it does not list {', '.join(uncovered)}", target=domain)
    if policy.mode != "enforce":
        return MTA_STS.finding(LOW, f"{seen}: senders do not enforce it", "set mode: enforce in the policy",
                               target=domain)
    return MTA_STS.ok(seen, target=domain)


def _tlsrpt_problem(text: str) -> str | None:
    """RFC 8460 3: "v=TLSRPTv1" first, then rua= with mailto: or https: URIs."""
    fields = [part.strip() for part in text.split(";") if part.strip()]
    tags = dict(part.partition("=")[::2] for part in fields)
    if not fields or fields[0].replace(" ", "") != "v=TLSRPTv1":
        return "it must start with v=TLSRPTv1"
    uris = [u.strip() for u in tags.get("rua", "").split(",") if u.strip()]
    if not uris:
        return "it has no rua="
    bad = [u for u in uris if not u.lower().startswith(("mailto:", "https:"))]
    return f"rua= URIs must be mailto: or https: ({', '.join(bad)})" if bad else None


async def tlsrpt(dns: Lookups, domain: str) -> Finding:
    name = f"_smtp._tls.{domain}"
    answer = await dns.resolve(name, "TXT")
    if answer.status == "tempfail":
        return TLSRPT.finding(MEDIUM, lookup_failed(f"TXT {name}", answer), target=domain)
    texts = [t for t in answer.texts() if t.replace(" ", "").lower().startswith("v=tlsrpt")]
    if not texts:
        return TLSRPT.finding(LOW, f"no TLS-RPT record at {name}", target=domain)
    if len(texts) > 1:
        return TLSRPT.finding(MEDIUM, f"{name} has {len(texts)} TLS-RPT records; RFC 8460 3 then applies none",
                              target=domain)
    problem = _tlsrpt_problem(texts[0])
    if problem is not None:
        return TLSRPT.finding(MEDIUM, f"{name} ({texts[0]}) is not well-formed: {problem}", target=domain)
    return TLSRPT.ok(f"{name}: {texts[0]}", target=domain)


# ----- DANE ----------------------------------------------------------------------------------------------

def _certificate_chain(config: Config, host: str) -> tuple[str, list[x509.Certificate]]:
    """The certificate file presented for ``host`` (SNI entries first) and its chain, leaf first."""
    entry = next((e for e in config.tls.certificates if any(hostname_matches(p, host) for p in e.hostnames)), None)
    path = entry.cert_file if entry else config.tls.cert_file or config.tls_dir / SELF_SIGNED_CERT
    leaf = read_leaf_certificate(path)  # TlsError with what to do
    return str(path), [leaf, *x509.load_pem_x509_certificates(path.read_bytes())[1:]]


def _tlsa_of(records: Iterable[object]) -> list[Tlsa]:
    return [Tlsa(int(r.usage), int(r.selector), int(r.mtype), bytes(r.cert))  # type: ignore[attr-defined]
            for r in records]


def _matches(record: Tlsa, chain: Sequence[x509.Certificate]) -> bool:
    """RFC 7672 3.1: DANE-EE against the leaf, DANE-TA against a certificate above it."""
    if record.selector not in (0, 1) or record.mtype not in (0, 1, 2):
        return False
    if record.usage == DANE_EE:
        return record_matches(record, chain[0])
    return record.usage == DANE_TA and any(record_matches(record, c) for c in chain[1:])


def _spki_sha256(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


async def _dane_host(config: Config, dns: Lookups, mx: str) -> tuple[Line, str | None]:
    """One MX host's TLSA records against our certificate: its line and, when they do not match, a fix."""
    name = f"_{DANE_PORT}._tcp.{mx}"
    answer = await dns.resolve(name, "TLSA")
    if answer.status == "tempfail":
        return (MEDIUM, lookup_failed(f"TLSA {name}", answer) + "; DANE senders may defer mail"), None
    if not answer.ok:
        return (OK, f"{name}: no TLSA records (DANE not published)"), None
    try:
        path, chain = _certificate_chain(config, mx)
    except (TlsError, OSError, ValueError) as exc:
        return (MEDIUM, f"{name} has TLSA records but our certificate cannot be read: {exc}"), None
    records = _tlsa_of(answer.records)
    texts = ", ".join(f"{r.usage} {r.selector} {r.mtype}" for r in records)
    validated = "" if answer.authenticated else (
        " (the answer was not DNSSEC-validated: senders ignore TLSA records without DNSSEC, or [dns] "
        "nameservers do not validate)")
    if any(_matches(r, chain) for r in records):
        return (OK if answer.authenticated else LOW, f"{name} ({texts}) matches {path}{validated}"), None
    fix = f"publish {name}. IN TLSA 3 1 1 {_spki_sha256(chain[0])} (the key of {path}) and remove the stale records"
    severity = HIGH if answer.authenticated else MEDIUM
    return (severity, f"no TLSA record at {name} ({texts}) matches the certificate {path}{validated}"), fix


async def dane(config: Config, dns: Lookups, domain: str, our_mx: Sequence[str]) -> Finding:
    """dns.dane for ``domain``: the TLSA records of each of its MX hosts that are this server."""
    if not our_mx:
        return DANE.skipped(f"no MX host of {domain} is this server (see dns.mx)", target=domain)
    results = [await _dane_host(config, dns, mx) for mx in dict.fromkeys(our_mx)]
    fixes = [fix for _, fix in results if fix]
    return verdict(DANE, [line for line, _ in results], domain, "; ".join(fixes) or None)
