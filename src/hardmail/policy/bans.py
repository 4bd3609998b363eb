"""Failure accounting and bans: when a failed login earns its source a ban, for how long, and how
long a failing client waits (tarpit). Pure decisions: counts and time are passed in.

Every rule is evaluated after a failed AUTH (not the first match: one failure counts for the
address rules and for the subnet rules alike), and each one that fires makes a ban:

1. never-ban: a source in a never-ban network is never banned (it still waits in the tarpit);
2. per source: ``failures`` failures from one address within ``window`` ban that address;
3. password spraying from one address: failing against ``spray_accounts`` different accounts
   within the window bans the address at once;
4. per subnet: ``subnet_failures`` failures from one IPv4 /24 or IPv6 /48 ban the whole subnet;
5. password spraying from one subnet (rotating addresses): failing against
   ``spray_subnet_accounts`` different accounts from one /24 or /48 bans the subnet.

Many addresses failing against one account (distributed guessing) ban nobody: that raises the
account's guard instead (:mod:`hardmail.policy.login_guard`), so that the owner's typo from a new
address is not a ban. Automatic bans refuse AUTH (scope ``auth``): the MX port keeps taking mail
from such a source, and a source with a successful login history for an account keeps logging in
to that account. An administrator's ban refuses everything (scope ``all``).

"One address" is an IPv4 address or an IPv6 /64: a single IPv6 host usually holds a whole /64
and can pick a fresh address in it for every try, so per-/128 counting would never ban it. The
subnet tier is the /24 (IPv4) or the /48 (IPv6, a typical site allocation). An IPv4-mapped IPv6
address (``::ffff:192.0.2.1``) counts as its IPv4 address.

A repeat offender's bans grow: the n-th ban of a subject lasts ``durations[n-1]`` (the last one
repeats); offences older than ``forget_after`` are forgiven.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BanRules:
    failures: int = 5
    window: float = 900.0
    durations: tuple[float, ...] = (3600.0, 86400.0, 604800.0)
    forget_after: float = 30 * 86400.0
    subnet_failures: int = 50
    spray_accounts: int = 4
    guessing_sources: int = 10
    spray_subnet_accounts: int = 10
    spray_global_accounts: int = 20
    spray_global_sources: int = 10
    guard_tarpit: float = 10.0
    never_ban: tuple[str, ...] = ()
    tarpit_step: float = 1.0
    tarpit_max: float = 10.0


@dataclass(frozen=True, slots=True)
class FailureStats:
    """Counts within the window, the failure being judged included."""

    ip_failures: int = 0
    subnet_failures: int = 0
    account_ip_failures: int = 0  # this account from this address
    accounts_from_ip: int = 0  # different accounts this address failed against
    ips_for_account: int = 0  # different addresses that failed against this account
    accounts_from_subnet: int = 0  # different accounts failed against from this subnet
    accounts_total: int = 0  # different accounts failed against from anywhere
    sources_total: int = 0  # different failing addresses


@dataclass(frozen=True, slots=True)
class BanDecision:
    subject: str  # an address, or a subnet in CIDR form
    kind: str  # "failures", "spraying", "subnet" or "subnet-spraying" (automatic); "admin", "smtp"
    reason: str


@dataclass(frozen=True, slots=True)
class Ban:
    subject: str
    kind: str
    reason: str
    created_at: float
    expires_at: float
    offences: int = 1  # how many times this subject has been banned (escalation)
    by_admin: bool = False

    def active(self, now: float) -> bool:
        return self.expires_at > now

    @property
    def scope(self) -> str:
        """"auth": refuses logins only (the MX port still takes mail); "all": refuses every connection."""
        return "auth" if self.kind in AUTH_BAN_KINDS and not self.by_admin else "all"


# Bans made for abuse of logins; any other kind (an administrator's, a ban for MX abuse) is "all".
AUTH_BAN_KINDS = frozenset({"failures", "spraying", "guessing", "subnet", "subnet-spraying"})


ADDRESS_PREFIX = {4: 32, 6: 64}  # what counts as "one address" (see the module docstring)
SUBNET_PREFIX = {4: 24, 6: 48}


def _plain(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ip`` parsed, an IPv4-mapped IPv6 address unmapped; ValueError when it is no address."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int) -> str:
    if prefix == address.max_prefixlen:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def address_key(ip: str) -> str:
    """The "one address" failures, bans and per-address limits are keyed by: an IPv4 address,
    or the /64 (CIDR form) of an IPv6 one."""
    address = _plain(ip)
    return _network_text(address, ADDRESS_PREFIX[address.version])


def subnet_of(ip: str) -> str:
    """The /24 of an IPv4 address or the /48 of an IPv6 one, in CIDR form."""
    address = _plain(ip)
    return _network_text(address, SUBNET_PREFIX[address.version])


def ban_subjects(ip: str) -> tuple[str, ...]:
    """What a ban on ``ip`` may be recorded under: the address itself (an administrator's ban),
    its address key (the IPv6 /64) and its subnet."""
    plain = str(_plain(ip))
    return tuple(dict.fromkeys((plain, address_key(plain), subnet_of(plain))))


def never_banned(ip: str, never_ban: Iterable[str]) -> bool:
    try:
        address = _plain(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in never_ban)


def decide_bans(ip: str, stats: FailureStats, rules: BanRules) -> list[BanDecision]:
    """After one failed login from ``ip``: every ban it earns, at most one per subject (``stats``
    are per address key and subnet). All rules are evaluated; none shadows another."""
    if never_banned(ip, rules.never_ban):
        return []
    key, subnet = address_key(ip), subnet_of(ip)
    found: list[BanDecision] = []
    if stats.ip_failures >= rules.failures:
        found.append(BanDecision(key, "failures", f"{stats.ip_failures} failed logins within {rules.window:.0f}s"))
    elif stats.accounts_from_ip >= rules.spray_accounts:
        reason = f"failed logins against {stats.accounts_from_ip} accounts (password spraying)"
        found.append(BanDecision(key, "spraying", reason))
    if stats.subnet_failures >= rules.subnet_failures:
        found.append(BanDecision(subnet, "subnet", f"{stats.subnet_failures} failed logins from {subnet}"))
    elif stats.accounts_from_subnet >= rules.spray_subnet_accounts:
        reason = f"failed logins against {stats.accounts_from_subnet} accounts from {subnet} (password spraying)"
        found.append(BanDecision(subnet, "subnet-spraying", reason))
    return found


def offences_before(previous: Ban | None, now: float, rules: BanRules) -> int:
    """How many earlier bans count towards escalation (forgotten after ``forget_after``)."""
    if previous is None or now - previous.expires_at > rules.forget_after:
        return 0
    return previous.offences


def ban_duration(offence: int, durations: Sequence[float]) -> float:
    """The n-th ban (1-based) lasts durations[n-1]; later ones repeat the longest."""
    return durations[min(max(offence, 1), len(durations)) - 1]


def new_ban(decision: BanDecision, previous: Ban | None, now: float, rules: BanRules) -> Ban:
    offence = offences_before(previous, now, rules) + 1
    return Ban(decision.subject, decision.kind, decision.reason, created_at=now,
               expires_at=now + ban_duration(offence, rules.durations), offences=offence)


def tarpit_delay(ip_failures: int, rules: BanRules) -> float:
    """Seconds a failed login waits before its reply: grows with the source's failures."""
    return min(rules.tarpit_max, max(0, ip_failures) * rules.tarpit_step)


def active_bans(bans: Iterable[Ban], now: float) -> list[Ban]:
    return [ban for ban in bans if ban.active(now)]


def longest(bans: Iterable[Ban]) -> Ban | None:
    """The ban that applies: one that refuses everything (scope ``all``) before one that refuses
    logins only, then the one that lasts longest; None when there is none. A longer login ban on
    the subnet must not hide an administrator's ban of the address itself."""
    return max(bans, key=lambda ban: (ban.scope == "all", ban.expires_at), default=None)


class BanIndex:
    """Bans by subject, for look-ups in memory (the server's snapshot of the stored bans).

    A ban that ends while it is held here stops applying at its end: :meth:`find` checks the time.
    """

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self._by_subject = {ban.subject: ban for ban in bans}

    def __len__(self) -> int:
        return len(self._by_subject)

    def __repr__(self) -> str:
        return f"BanIndex({len(self._by_subject)} bans)"

    def put(self, ban: Ban) -> None:
        """Add ``ban``, replacing any held for its subject."""
        self._by_subject[ban.subject] = ban

    def find(self, ip: str, now: float) -> Ban | None:
        """The active ban (see :func:`longest`) on any subject of ``ip`` (see :func:`ban_subjects`); None when
        there is none or ``ip`` is no address."""
        if not self._by_subject:
            return None
        try:
            subjects = ban_subjects(ip)
        except ValueError:
            return None
        held = (self._by_subject[subject] for subject in subjects if subject in self._by_subject)
        return longest(active_bans(held, now))


def explain(ip: str, bans: Iterable[Ban], now: float, rules: BanRules) -> list[str]:
    """Readable lines for ``hardmail ban explain``: why the address is (or is not) refused."""
    lines: list[str] = []
    if never_banned(ip, rules.never_ban):
        lines.append(f"{ip} is in the never-ban list: automatic bans never apply to it")
    for ban in bans:
        state = "active" if ban.active(now) else "expired"
        scope = ("; refuses logins only (the MX port takes mail, known login sources are let in)"
                 if ban.scope == "auth" else "")
        lines.append(f"{ban.subject}: {state} {ban.kind} ban (offence {ban.offences}): {ban.reason}{scope}")
    if not any(ban.active(now) for ban in bans):
        lines.append(f"{ip} is not banned")
    return lines
