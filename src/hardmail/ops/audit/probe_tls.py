"""Audit probes of TLS (practice 3) on every listener, inside implicit TLS or after STARTTLS/STLS:
whether a plain-text listener offers STARTTLS at all, whether TLS 1.0 or 1.1 is accepted, whether
weak TLS 1.2 ciphers are (NULL, anonymous, EXPORT, RC4, 3DES, static-RSA CBC-SHA1), and what the
certificate says (expiry; self-signed or not covering the server's name when that name is public).

Old versions and ciphers are offered one at a time through accept-anything client contexts
(:func:`~hardmail.server.probe_link.insecure_client_context`); what this machine's OpenSSL cannot
offer at all is reported as not checked, never as ok. The certificate is read from the DER the
server sent (``cryptography``); its chain is not verified against a trust store here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import warnings
from dataclasses import dataclass

from cryptography import x509

from hardmail.ops.audit.context import AuditContext, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.probe_wire import Talk, open_secure, open_talk, public_server_name, quit_politely, start_tls
from hardmail.server.probe_link import insecure_client_context
from hardmail.server.tls import certificate_covers, certificate_hostnames

STARTTLS = CheckInfo(
    "tls.starttls_offered", 3, "STARTTLS offered on plain-text listeners",
    "Without STARTTLS (STLS for POP3) every message, and every password, crosses the network readable "
    "and changeable by anyone on the way; MTA-STS and DANE cannot protect mail to this server.",
    "hardmail offers STARTTLS on every plain-text listener: check that its certificate loads "
    "(tls.cert_file, tls.key_file; `hardmail status`); Postfix: smtpd_tls_security_level = may.",
)
VERSIONS = CheckInfo(
    "tls.old_versions", 3, "TLS 1.0 and 1.1 refused",
    "TLS 1.0 and 1.1 are deprecated (RFC 8996): weak hashes and ciphers (BEAST, Lucky13); a client "
    "held down to them can be read by an attacker on the way.",
    'hardmail: tls.min_version = "TLSv1.2" (the default); Postfix: smtpd_tls_protocols = '
    ">=TLSv1.2; Dovecot: ssl_min_protocol = TLSv1.2.",
)
CIPHERS = CheckInfo(
    "tls.weak_ciphers", 3, "Weak TLS 1.2 ciphers refused",
    "NULL and anonymous ciphers give no secrecy or no authentication at all, EXPORT and RC4 are "
    "broken, 3DES falls to Sweet32, static RSA gives no forward secrecy.",
    "hardmail: leave tls.ciphers at its default (ECDHE/DHE with AES-GCM or ChaCha20); Postfix: "
    "smtpd_tls_exclude_ciphers = aNULL, eNULL, EXPORT, RC4, 3DES, MD5; Dovecot: ssl_cipher_list.",
)
EXPIRY = CheckInfo(
    "tls.cert_expiry", 3, "Certificate expiry",
    "An expired certificate makes clients refuse the server (or teaches users to click through "
    "warnings); MTA-STS senders stop delivering.",
    "Renew the certificate (certbot renew, or your CA), point tls.cert_file at the new chain and "
    "run `kill -HUP <hardmail pid>`.",
)
TRUST = CheckInfo(
    "tls.cert_name", 3, "Certificate trusted and for this name",
    "On a public name, a self-signed certificate or one for another name cannot be verified: clients "
    "warn, users learn to accept any certificate, and an attacker's certificate looks the same.",
    "Use a certificate from a certificate authority that covers the server's name (Let's Encrypt: "
    "certbot certonly -d <hostname>) in tls.cert_file / tls.key_file, or tls.certificates for "
    "several names.",
)
CHECKS: tuple[CheckInfo, ...] = (STARTTLS, VERSIONS, CIPHERS, EXPIRY, TRUST)
CERT_WARN_DAYS, CERT_HIGH_DAYS, CERT_CRITICAL_DAYS = 21, 14, 7


@dataclass(frozen=True)
class CipherGroup:
    name: str
    spec: str  # an OpenSSL cipher string
    severity: Severity


CIPHER_GROUPS = (
    CipherGroup("NULL (no encryption)", "eNULL", Severity.HIGH),
    CipherGroup("anonymous (no authentication)", "aNULL", Severity.HIGH),
    CipherGroup("EXPORT", "EXPORT", Severity.HIGH),
    CipherGroup("RC4", "RC4", Severity.HIGH),
    CipherGroup("3DES", "3DES", Severity.MEDIUM),
    CipherGroup("CBC-SHA1 without forward secrecy (static RSA)", "kRSA+SHA1", Severity.LOW),
)
OLD_VERSIONS = ((ssl.TLSVersion.TLSv1, "TLS 1.0"), (ssl.TLSVersion.TLSv1_1, "TLS 1.1"))


async def run(ctx: AuditContext) -> list[Finding]:
    if not ctx.running or not ctx.targets:
        why = "no server is running" if not ctx.running else "no listener to probe"
        return [check.skipped(why) for check in CHECKS]
    found = [f for per_target in await asyncio.gather(*(_probe(ctx, t) for t in ctx.targets)) for f in per_target]
    if not any(not t.implicit_tls for t in ctx.targets):
        found.append(STARTTLS.skipped("no plain-text listener to probe"))
    return found


def server_name(ctx: AuditContext, target: ProbeTarget) -> str | None:
    """The name clients use for the target: our own hostname, or the --target host when it is a name."""
    if ctx.own_server:
        return ctx.config.server.hostname
    return None if target.host.replace(".", "").isdigit() or ":" in target.host else target.host


# --- one target -------------------------------------------------------------------------------

async def _probe(ctx: AuditContext, target: ProbeTarget) -> list[Finding]:
    name = server_name(ctx, target)
    talk = await open_talk(target, ctx, server_name=name)
    label = target.label
    if isinstance(talk, str):
        checks = CHECKS if not target.implicit_tls else CHECKS[1:]
        return [check.skipped(talk, target=label) for check in checks]
    found: list[Finding] = []
    try:
        if not target.implicit_tls:
            problem, starttls = await _upgrade(talk, name)
            found.append(starttls)
            if problem:
                return found + [c.skipped(f"no TLS: {problem}", target=label) for c in CHECKS[1:]]
        der = talk.link.peer_certificate
        if name is None and target.protocol == "smtp":  # RFC 5321 4.3.1: the greeting names the server
            name = [*talk.greeting.split(), "", ""][1] or None
    finally:
        await quit_politely(talk)
    found += certificate_findings(ctx, target, der, name)
    found.append(await _old_versions(ctx, target, name))
    found.append(await _weak_ciphers(ctx, target, name))
    return found


async def _upgrade(talk: Talk, name: str | None) -> tuple[str, Finding]:
    """STARTTLS/STLS on a plain-text listener: what went wrong ("" when TLS is on) and the finding."""
    target, word = talk.target, "STLS" if talk.protocol == "pop3" else "STARTTLS"
    if not talk.offers(word):
        evidence = f"{target.kind} {target.label}: the capability list does not offer {word}"
        return f"{word} not offered", STARTTLS.finding(Severity.HIGH, evidence, target=target.label)
    problem = await start_tls(talk, None, name)
    if problem:
        evidence = f"{target.kind} {target.label} offers {word} but: {problem}"
        return problem, STARTTLS.finding(Severity.HIGH, evidence, target=target.label)
    evidence = f"{target.kind} {target.label} offers {word}; it gave {talk.link.tls_version} {talk.link.cipher}"
    return "", STARTTLS.ok(evidence, target=target.label)


async def _handshake(ctx: AuditContext, target: ProbeTarget, context: ssl.SSLContext,
                     name: str | None) -> tuple[bool | None, str]:
    """(True, "TLSv1 cipher") when the server accepted the context's offer, (False, why) when it
    refused the handshake, (None, why) when the probe could not get that far."""
    talk = await open_secure(target, ctx, tls=context, server_name=name)
    if isinstance(talk, str):
        return (False if "handshake failed" in talk else None), talk
    negotiated = f"{talk.link.tls_version} {talk.link.cipher}"
    await quit_politely(talk)
    return True, negotiated


def client_context(minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None,
                   ciphers: str | None = None) -> ssl.SSLContext | None:
    """An accept-anything context offering only these versions and ciphers; None when this
    machine's OpenSSL cannot offer them at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1, asked for on purpose
            context = insecure_client_context(minimum=minimum, maximum=maximum, ciphers=ciphers)
    except (ssl.SSLError, ValueError):
        return None
    probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    try:
        probe.do_handshake()  # writes a ClientHello, or fails when there is nothing to offer
    except ssl.SSLWantReadError:
        return context
    except ssl.SSLError:
        return None
    return context


# --- versions and ciphers ---------------------------------------------------------------------

async def _old_versions(ctx: AuditContext, target: ProbeTarget, name: str | None) -> Finding:
    accepted, refused, unchecked = [], [], []
    for version, title in OLD_VERSIONS:
        context = client_context(minimum=version, maximum=version)
        if context is None:
            unchecked.append(f"{title}: this machine's OpenSSL cannot offer it")
            continue
        result, detail = await _handshake(ctx, target, context, name)
        if result:
            accepted.append(f"{title} ({detail})")
        elif result is False:
            refused.append(title)
        else:
            unchecked.append(f"{title}: {detail}")
    label = target.label
    if accepted:
        return VERSIONS.finding(Severity.HIGH, f"{label} accepted " + ", ".join(accepted), target=label,
                                details=unchecked)
    if unchecked:
        done = f"; refused {', '.join(refused)}" if refused else ""
        return VERSIONS.skipped("; ".join(unchecked) + done, target=label)
    return VERSIONS.ok(f"{label} refused {' and '.join(refused)}", target=label)


def local_cipher_names(group: CipherGroup) -> frozenset[str]:
    """The TLS 1.2 ciphers of ``group`` this machine's OpenSSL can offer (empty: none)."""
    context = client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=group.spec)
    if context is None:
        return frozenset()
    return frozenset(c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3")


async def _weak_ciphers(ctx: AuditContext, target: ProbeTarget, name: str | None) -> Finding:
    remaining = {group: names for group in CIPHER_GROUPS if (names := local_cipher_names(group))}
    unchecked = [group.name for group in CIPHER_GROUPS if group not in remaining]
    accepted: list[tuple[CipherGroup, str]] = []
    problem = ""
    while remaining:  # offer every group left at once; the one it picks is accepted, then the rest again
        context = client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=":".join(g.spec for g in remaining))
        result, detail = await _handshake(ctx, target, context, name) if context else (False, "")
        if not result:
            problem = detail if result is None else ""
            break
        cipher = detail.split()[-1]
        group = next((g for g, names in remaining.items() if cipher in names), None)
        if group is None:
            break
        accepted.append((group, cipher))
        del remaining[group]
    return _cipher_finding(target, accepted, unchecked, problem)


def _cipher_finding(target: ProbeTarget, accepted: list[tuple[CipherGroup, str]], unchecked: list[str],
                    problem: str) -> Finding:
    label = target.label
    not_tried = [f"not tried (this machine's OpenSSL cannot offer them): {', '.join(unchecked)}"] if unchecked else []
    if accepted:
        worst = min((group.severity for group, _ in accepted), key=lambda s: s.rank)
        seen = ", ".join(f"{group.name}: {cipher}" for group, cipher in accepted)
        return CIPHERS.finding(worst, f"{label} accepted TLS 1.2 with {seen}", target=label, details=not_tried)
    if problem:
        return CIPHERS.skipped(problem, target=label)
    tried = ", ".join(g.name for g in CIPHER_GROUPS if g.name not in unchecked)
    return CIPHERS.finding(Severity.OK, f"{label} refused every weak group offered ({tried})", "",
                           target=label, details=not_tried)


# --- the certificate --------------------------------------------------------------------------

def certificate_findings(ctx: AuditContext, target: ProbeTarget, der: bytes | None, name: str | None) -> list[Finding]:
    label = target.label
    try:
        cert = x509.load_der_x509_certificate(der) if der else None
    except ValueError:
        cert = None
    if cert is None:
        return [check.skipped("the server sent no readable certificate", target=label) for check in (EXPIRY, TRUST)]
    now = dt.datetime.fromtimestamp(ctx.clock.now(), dt.UTC)
    return [expiry_finding(cert, now, label), trust_finding(cert, name, label)]


def expiry_finding(cert: x509.Certificate, now: dt.datetime, label: str) -> Finding:
    ends = cert.not_valid_after_utc
    days = (ends - now).total_seconds() / 86400
    what = f"the certificate of {label} ({_subject(cert)}) "
    if days <= 0:
        return EXPIRY.finding(Severity.CRITICAL, what + f"expired on {ends:%Y-%m-%d %H:%M} UTC", target=label)
    when = what + f"expires on {ends:%Y-%m-%d %H:%M} UTC, in {days:.1f} days"
    for limit, severity in ((CERT_CRITICAL_DAYS, Severity.CRITICAL), (CERT_HIGH_DAYS, Severity.HIGH),
                            (CERT_WARN_DAYS, Severity.MEDIUM)):
        if days < limit:
            return EXPIRY.finding(severity, when, target=label)
    return EXPIRY.ok(when, target=label)


def trust_finding(cert: x509.Certificate, name: str | None, label: str) -> Finding:
    self_signed = cert.issuer == cert.subject
    names = certificate_hostnames(cert)
    what = f"the certificate of {label} ({_subject(cert)}, for {', '.join(names) or 'no name'})"
    if not public_server_name(name):
        signed = "is self-signed" if self_signed else f"is issued by {cert.issuer.rfc4514_string()}"
        return TRUST.skipped(f"{what} {signed}; the server's name {name or '(unknown)'} is not a public DNS "
                             "name (loopback, .test, .example, .invalid, .local): fine for a test or a "
                             "first try, a public server needs a certificate from a CA for its name",
                             target=label)
    assert name is not None
    problems = ["it is self-signed"] if self_signed else []
    if not certificate_covers(names, name):
        problems.append(f"it does not cover {name}")
    if problems:
        return TRUST.finding(Severity.HIGH, f"{what}: " + " and ".join(problems), target=label)
    return TRUST.ok(f"{what} is issued by {cert.issuer.rfc4514_string()} and covers {name} "
                    "(the chain was not verified here)", target=label)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:200] or "no subject"
