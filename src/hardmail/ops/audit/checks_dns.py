"""DNS checks of the audit: what other servers see of this one in the DNS (issue 14, point 5).

For the server's host name: its A/AAAA records, the PTR of each of our addresses (forward-confirmed
and naming the HELO name) and our addresses on the configured DNSBLs. For every hosted domain: MX,
SPF (one record, pyspf's syntax check, ``-all``/``~all``, at most 10 look-ups, our addresses
pass), DKIM (every published selector holds our key), DMARC (policy, ``rua``), MTA-STS and TLS-RPT
records, and DANE TLSA records against the certificate we present. Every look-up goes through
``ctx.resolver`` (answers shared within one run); the parsers are the existing ones (pyspf through
:mod:`hardmail.msgauth.spf`, :mod:`~hardmail.msgauth.dmarc`, :mod:`~hardmail.delivery.tls_policy`),
as are the DNS advisor's record comparison and the spam scoring's FCrDNS and DNSBL look-ups. The MTA-STS,
TLS-RPT and DANE checks are in :mod:`hardmail.ops.audit.dns_transport`.

"Our" addresses are the public addresses of the ``[listen]`` configuration, else the A/AAAA records
of ``server.hostname``. A name that cannot be public (empty, ``localhost``, an IP address, no dot)
makes every check INFO. A name under a reserved or unknown suffix (``.test``, ``.internal``, ...)
is checked as if public when the configured resolver knows it (a private DNS, the test zone of a
loopback DNS server), else INFO: the checks then say what servers asking that resolver see.
The MTA-STS policy file is fetched only through an injected fetcher (``run(ctx, sts_fetcher=...)``):
the audit itself never connects to a web server.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import spf as pyspf  # type: ignore[import-untyped]

from hardmail.config.schema import Config, parse_host_port
from hardmail.delivery.tls_policy import Fetcher
from hardmail.msgauth import dmarc, dnsadvice, spamfacts, spf, workers
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys, Generation, PublicRecord
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.dns_transport import (
    DANE,
    MTA_STS,
    TLSRPT,
    Line,
    Lookups,
    dane,
    lookup_failed,
    mta_sts,
    tlsrpt,
    verdict,
)
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity

OK, LOW, MEDIUM, HIGH = Severity.OK, Severity.LOW, Severity.MEDIUM, Severity.HIGH

HOST = CheckInfo(
    "dns.host", 9, "Host name resolves to this server",
    "Other servers reach this one by the A/AAAA records of its host name (the MX target and the HELO "
    "name): without them no mail arrives, and mail sent from another address looks forged.",
    "publish A (and AAAA) records of [server] hostname with the server's public addresses")
PTR = CheckInfo(
    "dns.ptr", 9, "Reverse DNS names the HELO name (FCrDNS)",
    "Many receivers refuse or junk mail from an address whose PTR record is missing, does not resolve "
    "back to the address, or names another host than the HELO name.",
    "ask the provider of the address to set its PTR record to [server] hostname (or [outbound] helo_name)")
DNSBL = CheckInfo(
    "dns.dnsbl", 8, "Server addresses on DNS blocklists",
    "Mail from a listed address is refused; a listing usually means the server sent spam (a stolen "
    "password, an open relay).",
    "find the cause (the relay and auth findings, submission logs), stop it, then ask the list to delist")
MX = CheckInfo(
    "dns.mx", 9, "MX records point at this server",
    "Other servers deliver a domain's mail to the hosts of its MX records; without one that is this "
    "server, its mail goes elsewhere or nowhere.",
    "publish the MX record `hardmail dns DOMAIN` prints (DOMAIN. MX 10 <server.hostname>.)")
SPF = CheckInfo(
    "dns.spf", 9, "SPF record present and valid",
    "Receivers check SPF (RFC 7208): no record, two records or a syntax error (a permerror) leave the "
    "domain's mail without SPF, and DMARC then rests on DKIM alone.",
    "publish one TXT record: v=spf1 mx -all (see `hardmail dns DOMAIN`)")
SPF_ALL = CheckInfo(
    "dns.spf.all", 9, "SPF ends in -all or ~all",
    "+all lets every host on the Internet pass SPF for the domain; ?all or a record without all says "
    "nothing about forged mail.",
    "end the SPF record with -all (or ~all while testing)")
SPF_LOOKUPS = CheckInfo(
    "dns.spf.lookups", 9, "SPF needs at most 10 DNS look-ups",
    "RFC 7208 4.6.4: a record whose evaluation needs more than 10 look-ups (include, a, mx, ptr, exists, "
    "redirect, counted through every include) is a permerror: receivers treat it as no SPF at all.",
    "replace includes with the ip4:/ip6: ranges they stand for, drop ptr and includes no longer used")
SPF_OURS = CheckInfo(
    "dns.spf.ours", 9, "This server's addresses pass SPF",
    "Mail this server sends for the domain fails SPF when the record does not cover its addresses, and "
    "is then refused or junked under DMARC.",
    "add mx (when the MX is this server) or ip4:/ip6: with the server's addresses to the SPF record")
DKIM = CheckInfo(
    "dns.dkim", 9, "Published DKIM keys match ours",
    "Receivers verify this server's DKIM signatures with the key at SELECTOR._domainkey.DOMAIN: a missing "
    "or different key makes every signature fail, and DMARC with it.",
    "publish the records `hardmail dns DOMAIN` prints")
DMARC = CheckInfo(
    "dns.dmarc", 9, "DMARC policy published and enforcing",
    "Without a DMARC policy of quarantine or reject, receivers deliver mail that forges the domain in From:.",
    "publish _dmarc.DOMAIN TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@DOMAIN\"")
DMARC_RUA = CheckInfo(
    "dns.dmarc.rua", 9, "DMARC aggregate reports requested (rua)",
    "Aggregate reports show who sends mail in the domain's name: without rua= nobody sees forgeries or a "
    "broken SPF or DKIM set-up.",
    "add rua=mailto:postmaster@DOMAIN to the DMARC record")

HOST_CHECKS = (HOST, PTR, DNSBL)
DOMAIN_CHECKS = (MX, SPF, SPF_ALL, SPF_LOOKUPS, SPF_OURS, DKIM, DMARC, DMARC_RUA, MTA_STS, TLSRPT, DANE)
CHECKS: tuple[CheckInfo, ...] = HOST_CHECKS + DOMAIN_CHECKS

# RFC 5737 documentation addresses: never listed by a real SPF record, so one of them gets the
# result of the record's final "all" (or its default) after every mechanism has been evaluated
SPF_PROBE_ADDRESSES = ("192.0.2.1", "198.51.100.1")


@dataclass(frozen=True)
class _Host:
    name: str  # server.hostname
    helo: str  # outbound.helo_name or the host name
    problem: str | None  # why the name is not public, or None
    resolved: tuple[str, ...] | None  # A/AAAA of the name (None: the look-up failed)
    listen: tuple[str, ...]  # public addresses of the [listen] configuration
    addresses: tuple[str, ...]  # ours: the listen ones, else the resolved ones


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


# ----- public names and our addresses ---------------------------------------------------------------

async def _public_problem(dns: Lookups, name: str) -> str | None:
    """Why ``name`` is not a public name, or None (see the module docstring for reserved names)."""
    problem = dnsadvice.host_name_problem(name)
    host = name.strip().rstrip(".").lower()
    if problem is None:
        return None
    if "." not in host or host == "localhost" or host.endswith(".localhost") or _ip(host) is not None:
        return problem
    answer = await dns.resolve(host, "SOA")  # "nodata" too: the name exists for the resolver
    return None if answer.status in ("ok", "nodata") else f"{problem}, and the configured resolver does not know it"


def _listen_addresses(config: Config) -> tuple[str, ...]:
    listen = config.listen
    found: dict[str, None] = {}
    for value in (*listen.smtp, *listen.submission, *listen.submissions, *listen.imap, *listen.imaps,
                  *listen.pop3, *listen.pop3s):
        address = _ip(parse_host_port(value)[0])
        if address is not None and address.is_global:
            found[str(address)] = None
    return tuple(found)


async def _host_facts(config: Config, dns: Lookups) -> _Host:
    name = config.server.hostname.strip().rstrip(".").lower()
    helo = (config.outbound.helo_name or config.server.hostname).strip().rstrip(".").lower()
    problem = await _public_problem(dns, name)
    resolved = await spamfacts.addresses_of(dns, name) if problem is None else set()
    listen = _listen_addresses(config)
    ordered = None if resolved is None else tuple(sorted(resolved))
    return _Host(name, helo, problem, ordered, listen, listen or ordered or ())


# ----- the host name: A/AAAA, PTR, DNSBL ------------------------------------------------------------

def _host_address(host: _Host) -> Finding:
    if host.resolved is None:
        return HOST.finding(MEDIUM, f"the A/AAAA look-up of {host.name} failed; other servers may fail too")
    if not host.resolved:
        return HOST.finding(HIGH, f"{host.name} (server.hostname) has no A or AAAA record")
    missing = [a for a in host.listen if a not in host.resolved]
    if missing:
        return HOST.finding(HIGH, f"the listeners are on {', '.join(missing)} but {host.name} resolves to "
                                  f"{', '.join(host.resolved)}")
    source = "the listen addresses" if host.listen else "taken as this server's addresses"
    return HOST.ok(f"{host.name} resolves to {', '.join(host.resolved)} ({source})")


async def _ptr_line(dns: Lookups, host: _Host, ip: str) -> Line:
    reverse = ipaddress.ip_address(ip).reverse_pointer
    answer = await dns.resolve(reverse, "PTR")
    if answer.status == "tempfail":
        return MEDIUM, lookup_failed(f"PTR {reverse}", answer)
    names = [str(r.target.to_text(omit_final_dot=True)).lower() for r in answer.records]
    if not names:
        return HIGH, f"{ip} has no PTR record"
    if host.helo in names:
        found = await spamfacts.addresses_of(dns, host.helo)
        if found and ip in found:
            return OK, f"{ip} has PTR {host.helo}, which resolves back to it"
    confirmed = await spamfacts.forward_confirmed_name(dns, ip)
    if confirmed is None:
        return HIGH, f"the PTR of {ip} ({', '.join(names)}) does not resolve back to {ip}"
    return MEDIUM, f"the PTR of {ip} is {confirmed} (forward-confirmed), but the HELO name is {host.helo}"


async def _ptr(dns: Lookups, host: _Host) -> Finding:
    if not host.addresses:
        return PTR.skipped(f"no address of this server is known (no public listen address, {host.name} "
                           "has no A/AAAA record)")
    return verdict(PTR, [await _ptr_line(dns, host, ip) for ip in host.addresses], "")


async def _dnsbl(config: Config, dns: Lookups, host: _Host) -> Finding:
    lists = [spamfacts.Blocklist(b.zone, b.score, tuple(b.expect)) for b in config.antispam.dnsbl]
    if not lists:
        return DNSBL.skipped("no DNSBL is configured ([antispam] dnsbl)")
    if not host.addresses:
        return DNSBL.skipped("no address of this server is known")
    lines: list[Line] = []
    for ip in host.addresses:
        listed = await spamfacts.dnsbl_findings(dns, ip, lists)
        lines += [(HIGH, f"{ip} is {found.detail}") for found in listed]
    zones = ", ".join(b.zone for b in lists)
    return verdict(DNSBL, lines or [(OK, f"{', '.join(host.addresses)} not listed in {zones}")], "")


# ----- MX ----------------------------------------------------------------------------------------------

async def _is_ours(dns: Lookups, host: _Host, name: str) -> bool:
    if name == host.name:
        return True
    found = await spamfacts.addresses_of(dns, name)
    return bool(found and found & set(host.addresses))


async def _mx(dns: Lookups, host: _Host, domain: str) -> tuple[Finding, list[str]]:
    """The dns.mx finding and the MX hosts of ``domain`` that are this server."""
    answer = await dns.resolve(domain, "MX")
    if answer.status == "tempfail":
        return MX.finding(MEDIUM, lookup_failed(f"MX {domain}", answer), target=domain), []
    records = sorted(answer.records, key=lambda r: r.preference)
    names = [str(r.exchange.to_text(omit_final_dot=True)).lower() for r in records]
    if not names:
        return MX.finding(HIGH, f"{domain} has no MX record", target=domain), []
    if names == [""] or names == ["."]:
        return MX.finding(HIGH, f"{domain} has a null MX (RFC 7505): it refuses all mail", target=domain), []
    ours = [name for name in names if await _is_ours(dns, host, name)]
    listing = ", ".join(f"{r.preference} {n}" for r, n in zip(records, names, strict=True))
    if not ours:
        return MX.finding(HIGH, f"MX {listing}: none is this server ({host.name}, "
                                f"{', '.join(host.addresses) or 'no known address'})", target=domain), []
    return MX.ok(f"MX {listing}; this server: {', '.join(ours)}", target=domain), ours


# ----- SPF ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _SpfRun:
    result: str
    explanation: str
    lookups: int
    lax_result: str  # the result had lax processing's errors (e.g. the look-up limit) been ignored


def _spf_probe(resolver: Lookups, loop: asyncio.AbstractEventLoop, ip: str, domain: str, helo: str) -> _SpfRun:
    """pyspf in lax mode: it goes on past the look-up limit, so the look-ups are counted to the end."""
    query = spf.ResolverQuery(resolver, loop, i=ip, s=f"postmaster@{domain}", h=helo, strict=False)
    result, _code, explanation = query.check()
    error = query.perm_error
    lax = error.ext[0] if result == "permerror" and error is not None and error.ext else result
    return _SpfRun(result, explanation, int(query.lookups), lax)


def _is_spf(text: str) -> bool:
    """RFC 7208 4.5: "v=spf1" alone or followed by a space (the selection pyspf makes)."""
    return text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")


async def _spf(dns: Lookups, host: _Host, domain: str) -> list[Finding]:
    answer = await dns.resolve(domain, "TXT")
    records = [t for t in answer.texts() if _is_spf(t)]
    if answer.status == "tempfail" or len(records) != 1:
        if answer.status == "tempfail":
            first = SPF.finding(MEDIUM, lookup_failed(f"TXT {domain}", answer), target=domain)
        elif records:
            first = SPF.finding(HIGH, f"{domain} has {len(records)} SPF records ({' | '.join(records)}): "
                                      "RFC 7208 4.5 makes that a permerror", "keep exactly one v=spf1 record",
                                target=domain)
        else:
            first = SPF.finding(HIGH, f"{domain} has no SPF record (TXT v=spf1)", target=domain)
        return [first, *(c.skipped("no single SPF record (see dns.spf)", target=domain)
                         for c in (SPF_ALL, SPF_LOOKUPS, SPF_OURS))]
    probe_ip = next(a for a in SPF_PROBE_ADDRESSES if a not in host.addresses)
    probe = await workers.run(_spf_probe, dns, asyncio.get_running_loop(), probe_ip, domain, host.helo)
    return [_spf_syntax(domain, records[0], probe), _spf_all(domain, probe_ip, probe),
            _spf_lookups(domain, probe), await _spf_ours(dns, host, domain)]


def _too_many(probe: _SpfRun) -> bool:
    return probe.lookups > pyspf.MAX_LOOKUP and "DNS lookups" in probe.explanation


def _spf_syntax(domain: str, record: str, probe: _SpfRun) -> Finding:
    if probe.result == "permerror" and not _too_many(probe):
        return SPF.finding(HIGH, f"the SPF record of {domain} ({record}) is a permerror: {probe.explanation}",
                           "correct the record (RFC 7208 12 is its grammar), then run the audit again", target=domain)
    if probe.result == "temperror":
        return SPF.finding(MEDIUM, f"evaluating the SPF record of {domain} failed: {probe.explanation}",
                           target=domain)
    return SPF.ok(f"one SPF record: {record}", target=domain)


def _spf_all(domain: str, probe_ip: str, probe: _SpfRun) -> Finding:
    seen = f"an address the record does not list ({probe_ip}) gets {probe.lax_result}"
    if probe.lax_result in ("fail", "softfail"):
        return SPF_ALL.ok(seen, target=domain)
    if probe.lax_result == "pass":
        return SPF_ALL.finding(HIGH, f"{seen}: the record allows every host (+all or an equivalent)", target=domain)
    if probe.lax_result == "neutral":
        return SPF_ALL.finding(HIGH, f"{seen}: the record ends in ?all or has no all", target=domain)
    return SPF_ALL.skipped(f"the record could not be evaluated ({probe.explanation})", target=domain)


def _spf_lookups(domain: str, probe: _SpfRun) -> Finding:
    if probe.lookups > pyspf.MAX_LOOKUP:
        return SPF_LOOKUPS.finding(HIGH, f"evaluating the SPF record of {domain} takes {probe.lookups} DNS "
                                         "look-ups; RFC 7208 4.6.4 allows 10", target=domain)
    if probe.result == "permerror":
        return SPF_LOOKUPS.skipped("the record is a permerror (see dns.spf)", target=domain)
    return SPF_LOOKUPS.ok(f"{probe.lookups} DNS look-ups (at most 10)", target=domain)


async def _spf_ours(dns: Lookups, host: _Host, domain: str) -> Finding:
    if not host.addresses:
        return SPF_OURS.skipped("no address of this server is known", target=domain)
    lines: list[Line] = []
    for ip in host.addresses:
        found = await spf.check_mail_from(dns, ip, f"postmaster@{domain}", host.helo)
        severity = OK if found.result == "pass" else HIGH
        lines.append((severity, f"mail from {ip} for {domain} gets SPF {found.result}"))
    return verdict(SPF_OURS, lines, domain)


# ----- DKIM --------------------------------------------------------------------------------------------

# (severity when missing, when different) per key state: pending keys sign once published
DKIM_SEVERITY = {"active": (HIGH, HIGH), "retiring": (LOW, MEDIUM), "pending": (LOW, MEDIUM)}


def _published_keys(keys: DomainKeys) -> list[tuple[Generation, list[PublicRecord]]]:
    return [(g, keys.public_records(g)) for g in keys.generations()]


async def _dkim_line(dns: Lookups, domain: str, generation: Generation, record: PublicRecord) -> Line:
    missing, wrong = DKIM_SEVERITY[generation.state]
    advice = dnsadvice.Advice(record.name(domain), "TXT", dnsadvice.quoted_txt(record.txt), "")
    answer = await dns.resolve(advice.name, "TXT")  # shared with check_one's own look-up
    result = await dnsadvice.check_one(dns, advice)
    what = f"{advice.name} ({generation.state} key)"
    if answer.status == "tempfail":
        return MEDIUM, lookup_failed(f"TXT {advice.name}", answer)
    if result.status == "ok":
        return OK, f"{what} matches our key"
    if result.status == "missing":
        return missing, f"{what} is not published"
    return wrong, f"{what}: the published record differs from our key"


async def _dkim(config: Config, dns: Lookups, domain: str) -> Finding:
    keys = DomainKeys(config.data_dir, domain)
    try:
        generations = await workers.run(_published_keys, keys)
    except DkimKeyError as exc:
        return DKIM.finding(MEDIUM, str(exc), target=domain)
    if not generations:
        return DKIM.finding(HIGH, f"{domain} has no DKIM keys: its mail is not signed",
                            f"hardmail dkim generate {domain}, then publish the records it prints", target=domain)
    lines = [await _dkim_line(dns, domain, generation, record)
             for generation, records in generations for record in records]
    return verdict(DKIM, lines, domain)


# ----- DMARC -------------------------------------------------------------------------------------------

async def _dmarc(dns: Lookups, domain: str) -> list[Finding]:
    record, where, status = await dmarc.discover(dns, domain)
    if record is None:
        if status == "tempfail":
            first = DMARC.finding(MEDIUM, f"the DMARC look-up at _dmarc.{where} failed", target=domain)
        else:
            first = DMARC.finding(HIGH, await _no_dmarc(dns, domain), target=domain)
        return [first, DMARC_RUA.skipped("no DMARC record (see dns.dmarc)", target=domain)]
    at = f"_dmarc.{where}"
    if record.policy == "none":
        first = DMARC.finding(MEDIUM, f"{at} has p=none: forged mail is delivered (monitoring only)",
                              "raise the policy to p=quarantine (then p=reject) once the reports are clean",
                              target=domain)
    elif record.pct < 100:
        first = DMARC.finding(LOW, f"{at} has p={record.policy} but pct={record.pct}: the rest of the "
                                   "forged mail is delivered", "remove pct= (100 is the default)", target=domain)
    else:
        first = DMARC.ok(f"{at} has p={record.policy}", target=domain)
    if record.rua:
        return [first, DMARC_RUA.ok(f"{at} has rua={record.rua}", target=domain)]
    return [first, DMARC_RUA.finding(LOW, f"{at} has no rua=: nobody receives aggregate reports", target=domain)]


async def _no_dmarc(dns: Lookups, domain: str) -> str:
    answer = await dns.resolve(f"_dmarc.{domain}", "TXT")
    found = [t for t in answer.texts() if t.lower().startswith("v=dmarc1")]
    if len(found) > 1:
        return f"_dmarc.{domain} has {len(found)} DMARC records; RFC 7489 6.6.3 then applies none"
    if found:
        return f"the record at _dmarc.{domain} is not valid DMARC ({found[0]}): v=DMARC1 first, then p="
    return f"{domain} has no DMARC record (TXT at _dmarc.{domain})"


# ----- the run -------------------------------------------------------------------------------------------

async def _domain(ctx: AuditContext, dns: Lookups, host: _Host, domain: str,
                  fetcher: Fetcher | None) -> list[Finding]:
    problem = await _public_problem(dns, domain)
    if problem is not None:
        return [c.skipped(f"{domain} is not a public name ({problem})", target=domain) for c in DOMAIN_CHECKS]
    mx, our_mx = await _mx(dns, host, domain)
    spf_found, dkim_found, dmarc_found, sts_found, tlsrpt_found, dane_found = await asyncio.gather(
        _spf(dns, host, domain), _dkim(ctx.config, dns, domain), _dmarc(dns, domain),
        mta_sts(ctx, dns, domain, our_mx, fetcher), tlsrpt(dns, domain), dane(ctx.config, dns, domain, our_mx))
    return [mx, *spf_found, dkim_found, *dmarc_found, sts_found, tlsrpt_found, dane_found]


async def _domains(ctx: AuditContext, dns: Lookups, host: _Host, fetcher: Fetcher | None) -> list[Finding]:
    if ctx.store is None:
        return [c.skipped("no database (the audit of another server)") for c in DOMAIN_CHECKS]
    names = sorted(d.name for d in await ctx.store.list_domains() if d.enabled)
    if not names:
        return [c.skipped("no hosted domain (hardmail domain add DOMAIN)") for c in DOMAIN_CHECKS]
    per_domain = await asyncio.gather(*(_domain(ctx, dns, host, name, fetcher) for name in names))
    return [finding for findings in per_domain for finding in findings]


async def run(ctx: AuditContext, *, sts_fetcher: Fetcher | None = None) -> list[Finding]:
    """One finding per host check, and one per domain check and hosted domain (target: the domain)."""
    if not ctx.own_server:
        return [c.skipped("the audit of another server (--target) does not look at our DNS") for c in CHECKS]
    dns = Lookups(ctx.resolver, ctx.timeout)
    host = await _host_facts(ctx.config, dns)
    if host.problem is not None:
        why = (f"server.hostname {host.name!r} is not a public name ({host.problem}); set [server] hostname "
               "to the name other servers reach this one by")
        return [c.skipped(why) for c in CHECKS]
    findings = [_host_address(host), await _ptr(dns, host), await _dnsbl(ctx.config, dns, host)]
    findings += await _domains(ctx, dns, host, sts_fetcher)
    return findings
