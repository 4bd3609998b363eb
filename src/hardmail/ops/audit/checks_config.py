"""The audit's configuration checks: the insecure settings ``hardmail config check`` warns about,
the defences that are on or off (greylisting, bans, rate and connection limits, DNSBL scoring),
the IP ranges in the database (relaying for everyone, overlaps that hide a range), the Argon2
parameters against OWASP's minimum, and the backup schedule, the audit and the notices switched off.

The insecure settings are not judged here a second time: the sentences of
:func:`hardmail.config.warnings.insecure_warnings` are sorted into checks by the config key each
one names first (a sentence no check claims lands in ``config.other_warnings``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.policy.access import Direction, IpRange, effective_ranges, parse_address

# --- the sentences of `config check`, sorted by the key they name -----------------------------


@dataclass(frozen=True, slots=True)
class WarningKind:
    check: CheckInfo
    keys: dict[str, Severity]  # config key named in the sentence -> severity of the finding


def _kind(id_: str, practice: int, title: str, why: str, fix: str, keys: dict[str, Severity]) -> WarningKind:
    return WarningKind(CheckInfo(id_, practice, title, why, fix), keys)


WARNING_KINDS: tuple[WarningKind, ...] = (
    _kind("config.plaintext_auth", 1, "SMTP AUTH outside TLS",
          "Passwords sent before STARTTLS can be read by anyone on the path.",
          "smtp.allow_plaintext_auth = false", {"smtp.allow_plaintext_auth": Severity.CRITICAL}),
    _kind("config.plaintext_login", 1, "IMAP/POP3 login outside TLS",
          "Passwords sent before STARTTLS can be read by anyone on the path.",
          "imap.allow_plaintext_login = false and pop3.allow_plaintext_login = false",
          {"imap.allow_plaintext_login": Severity.HIGH, "pop3.allow_plaintext_login": Severity.HIGH}),
    _kind("config.tls_version", 3, "Old TLS versions allowed",
          "TLS 1.0 and 1.1 have known weaknesses and are deprecated (RFC 8996).",
          "tls.min_version = \"TLSv1.2\"", {"tls.min_version": Severity.HIGH}),
    _kind("config.trusted_networks", 8, "Trusted networks that cover the Internet",
          "A trusted network relays without AUTH: one this wide makes an open relay.",
          "relay.trusted_networks: list only your own networks", {"relay.trusted_networks": Severity.CRITICAL}),
    _kind("config.auth_on_mx", 1, "AUTH on the MX listener",
          "AUTH on port 25 invites password guessing from the whole Internet.",
          "smtp.auth_on_mx = false", {"smtp.auth_on_mx": Severity.MEDIUM}),
    _kind("config.self_signed", 3, "Self-signed certificate on public listeners",
          "Clients cannot verify a self-signed certificate, so they learn to accept any certificate.",
          "tls.cert_file and tls.key_file: a certificate from a CA", {"tls.cert_file": Severity.MEDIUM}),
    _kind("config.log_file", 6, "Log file others can read or write",
          "The log shows addresses and sessions; fake lines written by others mislead fail2ban.",
          "chmod 600 the file named by logging.file (or set logging.file_group)",
          {"logging.file": Severity.MEDIUM}),
    _kind("config.session_check", 4, "Slow end of sessions after a password change",
          "Sessions of a disabled account or a changed password should end within a second.",
          "auth.session_check_seconds = 0.5", {"auth.session_check_seconds": Severity.LOW}),
    _kind("config.hash_pool", 4, "One client can fill the password-hashing pool",
          "A client that takes every hashing place keeps every other login out.",
          "auth.argon2.per_source: lower it", {"auth.argon2.per_source": Severity.LOW}),
    _kind("config.message_cap", 12, "Bytes in flight below the message size",
          "Messages larger than the in-flight cap are deferred at every try and bounce after days.",
          "smtp.max_bytes_in_flight: several times smtp.max_message_size",
          {"smtp.max_bytes_in_flight": Severity.LOW}),
    _kind("config.backup", 11, "Backups off, unverified or unencrypted",
          "Without verified backups a failed disk or a mistaken command can lose every mailbox.",
          "backup.enabled = true", {"backup.enabled": Severity.HIGH, "backup.verify": Severity.MEDIUM,
                                    "backup.destination": Severity.MEDIUM}),
)
OTHER_WARNINGS = CheckInfo(
    "config.other_warnings", 14, "Other insecure settings",
    "`hardmail config check` warns about these settings.", "the setting each warning names")


def _worst_of(severities: Iterable[Severity]) -> Severity:
    return min(severities, key=lambda s: s.rank)


def _key_of(sentence: str) -> tuple[WarningKind | None, str]:
    """The kind whose key the sentence names first, and that key."""
    best: tuple[int, WarningKind | None, str] = (len(sentence) + 1, None, "")
    for kind in WARNING_KINDS:
        for key in kind.keys:
            at = sentence.find(key)
            if 0 <= at < best[0]:
                best = (at, kind, key)
    return best[1], best[2]


def _advice(sentence: str) -> str:
    """What the sentence says to do: its last clause (after the last ``;``)."""
    return sentence.rpartition("; ")[2].rstrip(".").strip() or sentence


def _summary(sentence: str) -> str:
    """What was seen: the sentence up to its first ``: `` (else its first ``, ``)."""
    for mark in (": ", ", "):
        if mark in sentence:
            return sentence.partition(mark)[0].strip()
    return sentence.rstrip(".")


def _warning_finding(check: CheckInfo, found: Sequence[tuple[str, str, Severity]]) -> Finding:
    """``found``: (sentence, key, severity) of each warning of this check."""
    if not found:
        return check.ok("`hardmail config check` finds nothing of this kind")
    severity = _worst_of(s for _t, _k, s in found)
    evidence = "; ".join(_summary(text) for text, _k, _s in found)
    fix = "; ".join(f"{key}: {_advice(text)}" if key else _advice(text) for text, key, _s in found)
    return check.finding(severity, evidence, fix, details=[text for text, _k, _s in found])


def warning_findings(cfg: Config) -> list[Finding]:
    """One finding per warning kind (ok when `config check` has nothing of it), plus the rest."""
    claimed: dict[str, list[tuple[str, str, Severity]]] = {kind.check.id: [] for kind in WARNING_KINDS}
    others: list[tuple[str, str, Severity]] = []
    for sentence in insecure_warnings(cfg):
        kind, key = _key_of(sentence)
        if kind is None:
            others.append((sentence, "", Severity.MEDIUM))
        else:
            claimed[kind.check.id].append((sentence, key, kind.keys[key]))
    return [*(_warning_finding(kind.check, claimed[kind.check.id]) for kind in WARNING_KINDS),
            _warning_finding(OTHER_WARNINGS, others)]


# --- defences on or off --------------------------------------------------------------------

GREYLIST = CheckInfo(
    "config.greylisting", 10, "Greylisting",
    "Greylisting defers mail from unknown senders once; most spam software never retries.",
    "greylist.enabled = true")
BANS = CheckInfo(
    "config.auto_ban", 12, "Automatic bans after failed logins",
    "Bans stop password guessing; a high threshold or short bans let a guesser go on.",
    "access.bans.failures = 5, access.bans.durations = [3600, 86400, 604800]")
LIMITS = CheckInfo(
    "config.rate_limits", 12, "Connection and sending limits",
    "Limits keep one client from taking every connection and a stolen account from sending a flood.",
    "the [access.limits] defaults")
DNSBL = CheckInfo(
    "config.dnsbl", 10, "Spam scoring and DNS blocklists",
    "DNS blocklists name the addresses that send spam now; without scoring every message is delivered.",
    "antispam.enabled = true and an [[antispam.dnsbl]] zone (for example zen.spamhaus.org)")

BAN_MAX_FAILURES = 10  # more failed logins than this before a ban: too many guesses
BAN_MIN_SECONDS = 300.0  # a first ban shorter than this hardly slows a guesser down
# Above these an [access.limits] value no longer limits anything a normal server sees
LIMIT_CEILINGS = {"connections_per_ip": 200, "connections_per_subnet": 1000, "new_connections_per_minute": 1200,
                  "messages_per_hour": 5000, "messages_per_day": 20000, "recipients_per_hour": 20000,
                  "recipients_per_day": 100000}
# A network this wide (IPv4 /8, IPv6 /16 or wider) covers far more than anyone's own networks
WIDE_PREFIX = {4: 8, 6: 16}


def greylist_finding(cfg: Config) -> Finding:
    grey = cfg.greylist
    if not grey.enabled:
        return GREYLIST.finding(Severity.LOW, "greylisting is off (greylist.enabled = false, the default)")
    scope = ", ".join(grey.domains) if grey.domains else "every hosted domain"
    return GREYLIST.ok(f"greylisting is on for {scope} (initial delay {grey.initial_delay:g} s)")


def _wide_networks(networks: Sequence[str]) -> list[str]:
    found = []
    for text in networks:
        network = ipaddress.ip_network(text, strict=False)
        if network.prefixlen <= WIDE_PREFIX[network.version]:
            found.append(str(network))
    return found


def bans_finding(cfg: Config) -> Finding:
    bans = cfg.access.bans
    problems: list[tuple[Severity, str, str]] = []
    if bans.failures > BAN_MAX_FAILURES:
        problems.append((Severity.MEDIUM, f"a source is banned only after {bans.failures} failed logins",
                         f"access.bans.failures = 5 (at most {BAN_MAX_FAILURES})"))
    if bans.durations[0] < BAN_MIN_SECONDS:
        problems.append((Severity.LOW, f"the first ban lasts {bans.durations[0]:g} s",
                         f"access.bans.durations: the first at least {BAN_MIN_SECONDS:g} s (default 3600)"))
    wide = _wide_networks(bans.never_ban)
    if wide:
        problems.append((Severity.MEDIUM, f"access.bans.never_ban exempts {', '.join(wide)}",
                         "access.bans.never_ban: list only your own networks"))
    seen = (f"{bans.failures} failed logins in {bans.window:g} s ban a source for "
            f"{bans.durations[0]:g} s at first")
    return _from_problems(BANS, problems, seen)


def _from_problems(check: CheckInfo, problems: list[tuple[Severity, str, str]], seen: str) -> Finding:
    if not problems:
        return check.ok(seen)
    severity = _worst_of(s for s, _e, _f in problems)
    return check.finding(severity, "; ".join(e for _s, e, _f in problems),
                         "; ".join(f for _s, _e, f in problems), details=[e for _s, e, _f in problems])


def limits_finding(cfg: Config) -> Finding:
    limits = cfg.access.limits
    problems = []
    for name, ceiling in LIMIT_CEILINGS.items():
        value = getattr(limits, name)
        if value > ceiling:
            default = type(limits).model_fields[name].default
            problems.append((Severity.LOW, f"access.limits.{name} is {value} (above {ceiling}: no real limit)",
                             f"access.limits.{name} = {default}"))
    seen = (f"{limits.connections_per_ip} connections per address, {limits.messages_per_hour} messages "
            f"per hour per account")
    return _from_problems(LIMITS, problems, seen)


def dnsbl_finding(cfg: Config) -> Finding:
    spam = cfg.antispam
    if not spam.enabled:
        return DNSBL.finding(Severity.MEDIUM, "spam scoring is off (antispam.enabled = false): "
                             "no DNSBL, HELO, SPF or DMARC score counts", "antispam.enabled = true")
    if not spam.dnsbl:
        return DNSBL.finding(Severity.LOW, "spam scoring is on but no DNS blocklist is configured "
                             "(antispam.dnsbl is empty, the default)",
                             "add an [[antispam.dnsbl]] table with zone = \"zen.spamhaus.org\" (or another list)")
    return DNSBL.ok("spam scoring is on with DNS blocklists " + ", ".join(d.zone for d in spam.dnsbl))


# --- IP ranges ---------------------------------------------------------------------------

RANGE_RELAY = CheckInfo(
    "config.range_open_relay", 8, "IP range relaying for everyone",
    "A range that covers public address space and delivers to other domains without AUTH is an open relay.",
    "hardmail range remove NAME, then hardmail range add NAME ADDRESSES "
    "--require-auth local-external,external-external")
RANGE_OVERLAP = CheckInfo(
    "config.range_overlap", 7, "IP ranges that overlap surprisingly",
    "The highest priority wins, then the narrowest range: a narrower range of lower priority inside a "
    "wider one never applies, and ranges of one priority that cross decide by size, not by intent.",
    "hardmail range remove NAME and add it again with another --priority")
RELAY_DIRECTIONS = (Direction.LOCAL_EXTERNAL, Direction.EXTERNAL_EXTERNAL)
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::1/128"))


def _is_public(found: IpRange) -> bool:
    """Whether the range reaches outside every private, shared, loopback and link-local network."""
    low, high = parse_address(found.lower), parse_address(found.upper)
    return not any(low in net and high in net for net in _NOT_PUBLIC)


def _is_wide(found: IpRange) -> bool:
    version = parse_address(found.lower).version
    bits = 32 if version == 4 else 128
    return found.size() + 1 >= 1 << (bits - WIDE_PREFIX[version])


def _relays_without_auth(found: IpRange) -> list[Direction]:
    if not found.protocols & {"smtp", "submission"}:
        return []
    return [d for d in RELAY_DIRECTIONS if d in found.deliveries and d not in found.auth_required]


def range_relay_finding(ranges: Sequence[IpRange]) -> Finding:
    open_ranges = []
    for found in ranges:
        directions = _relays_without_auth(found)
        if directions and _is_public(found) and _is_wide(found):
            open_ranges.append(f"range {found.name} ({found.lower} - {found.upper}, priority {found.priority}) "
                               f"delivers {', '.join(d.value for d in directions)} without SMTP AUTH")
    if not open_ranges:
        return RANGE_RELAY.ok(f"no range of public address space relays without AUTH ({len(ranges)} ranges)")
    return RANGE_RELAY.finding(Severity.CRITICAL, "; ".join(open_ranges), details=open_ranges)


def _overlap(a: IpRange, b: IpRange) -> bool:
    a_low, a_high, b_low, b_high = (parse_address(x) for x in (a.lower, a.upper, b.lower, b.upper))
    return a_low.version == b_low.version and int(a_low) <= int(b_high) and int(b_low) <= int(a_high)


def _inside(inner: IpRange, outer: IpRange) -> bool:
    return outer.contains(parse_address(inner.lower)) and outer.contains(parse_address(inner.upper))


def _overlap_problem(a: IpRange, b: IpRange) -> tuple[Severity, str] | None:
    if not _overlap(a, b):
        return None
    for inner, outer in ((a, b), (b, a)):
        if _inside(inner, outer) and inner.priority < outer.priority:
            return Severity.MEDIUM, (f"range {inner.name} (priority {inner.priority}) lies inside {outer.name} "
                                     f"(priority {outer.priority}) and never applies")
    same_bounds = (a.lower, a.upper) == (b.lower, b.upper)
    nested = _inside(a, b) or _inside(b, a)
    if a.priority == b.priority and (same_bounds or not nested):
        how = "the name decides" if same_bounds else "the narrower decides in the overlap"
        return Severity.LOW, f"ranges {a.name} and {b.name} overlap at the same priority {a.priority}: {how}"
    return None


def range_overlap_finding(ranges: Sequence[IpRange]) -> Finding:
    problems = []
    for index, a in enumerate(ranges):
        for b in ranges[index + 1:]:
            problem = _overlap_problem(a, b)
            if problem is not None:
                problems.append(problem)
    if not problems:
        return RANGE_OVERLAP.ok(f"no range hides another or crosses one of its priority ({len(ranges)} ranges)")
    severity = _worst_of(s for s, _t in problems)
    texts = [t for _s, t in problems]
    return RANGE_OVERLAP.finding(severity, "; ".join(texts), details=texts)


async def range_findings(ctx: AuditContext) -> list[Finding]:
    if ctx.store is None:
        why = "no database here (auditing another server)"
        return [RANGE_RELAY.skipped(why), RANGE_OVERLAP.skipped(why)]
    now = ctx.clock.now()
    ranges = [r for r in effective_ranges(await ctx.store.access.list_ranges()) if not r.expired(now)]
    return [range_relay_finding(ranges), range_overlap_finding(ranges)]


# --- Argon2, backups, audit and notices -------------------------------------------------------

ARGON2 = CheckInfo(
    "config.argon2", 2, "Argon2id parameters below OWASP's minimum",
    "Cheap hashes let a stolen database be guessed quickly.",
    "[auth.argon2] memory_cost = 19456 and time_cost = 2 or more (default 65536 and 3)")
# OWASP Password Storage Cheat Sheet: Argon2id with p=1 and one of these (memory KiB, iterations)
OWASP_ARGON2 = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
AUDIT = CheckInfo(
    "config.audit", 14, "Scheduled audit",
    "A daily audit notices a setting, a key or a backup going wrong before an attacker does.",
    "audit.enabled = true")
NOTICES = CheckInfo(
    "config.notices", 15, "Security notices to users",
    "Users who are told of a new sign-in or a changed credential notice a stolen account at once.",
    "notices.enabled = true")


def argon2_finding(cfg: Config) -> Finding:
    argon2 = cfg.auth.argon2
    seen = f"m={argon2.memory_cost} KiB, t={argon2.time_cost}, p={argon2.parallelism}"
    if any(argon2.memory_cost >= m and argon2.time_cost >= t for m, t in OWASP_ARGON2):
        return ARGON2.ok(f"{seen} meets OWASP's minimum")
    floor = ", ".join(f"m={m} t={t}" for m, t in OWASP_ARGON2)
    return ARGON2.finding(Severity.MEDIUM, f"{seen} is below every OWASP minimum ({floor}, p=1)")


def audit_finding(cfg: Config) -> Finding:
    if not cfg.audit.enabled:
        return AUDIT.finding(Severity.MEDIUM, "the scheduled audit is off (audit.enabled = false)")
    return AUDIT.ok(f"the audit runs every {cfg.audit.interval_hours:g} h")


def notices_finding(cfg: Config) -> Finding:
    notices = cfg.notices
    if not notices.enabled:
        return NOTICES.finding(Severity.MEDIUM, "security notices are off (notices.enabled = false)")
    off = [f"notices.{name} = false" for name in ("new_sign_in", "credential_changes") if not getattr(notices, name)]
    fixes = [f"notices.{name} = true" for name in ("new_sign_in", "credential_changes") if not getattr(notices, name)]
    if not cfg.impersonation.enabled:
        off.append("impersonation.enabled = false")
        fixes.append("impersonation.enabled = true")
    if off:
        return NOTICES.finding(Severity.LOW, "some notices are off: " + ", ".join(off), ", ".join(fixes),
                               details=off)
    return NOTICES.ok("new-sign-in and credential-change notices and impersonation warnings are on")


CHECKS: tuple[CheckInfo, ...] = (
    *(kind.check for kind in WARNING_KINDS), OTHER_WARNINGS, GREYLIST, BANS, LIMITS, DNSBL,
    RANGE_RELAY, RANGE_OVERLAP, ARGON2, AUDIT, NOTICES,
)


async def run(ctx: AuditContext) -> list[Finding]:
    cfg = ctx.config
    return [
        *warning_findings(cfg),
        greylist_finding(cfg), bans_finding(cfg), limits_finding(cfg), dnsbl_finding(cfg),
        *await range_findings(ctx),
        argon2_finding(cfg), audit_finding(cfg), notices_finding(cfg),
    ]
