"""Access-control use-cases shared by the CLI (and later the HTTP API): IP ranges, bans, the
nftables export and the login history of an account.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from hardmail.admin.service import AdminError
from hardmail.config.schema import Config
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.core.clock import Clock, SystemClock
from hardmail.policy.access import (
    PROTOCOLS,
    Direction,
    IpRange,
    RangeError,
    bounds_of,
    effective_ranges,
    matching_range,
)
from hardmail.policy.bans import Ban, active_bans, ban_subjects, explain
from hardmail.server.access_hook import ban_rules, log_ban
from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_credentials import LoginEvent

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` or ``2w`` → seconds."""
    match = _DURATION.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise AdminError(f"{text!r} is not a duration", "write a number with s, m, h, d or w, e.g. 1h or 7d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_directions(text: str) -> frozenset[Direction]:
    """``local-external,external-external`` (or ``all`` / ``none``) → directions."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return frozenset(Direction)
    if words in (["none"], []):
        return frozenset()
    try:
        return frozenset(Direction(w) for w in words)
    except ValueError:
        choices = ", ".join(d.value for d in Direction)
        raise AdminError(f"unknown direction in {text!r}", f"use all, none or a list of: {choices}") from None


def parse_protocols(text: str) -> frozenset[str]:
    words = {w.strip().lower() for w in text.split(",") if w.strip()}
    if words == {"all"}:
        return frozenset(PROTOCOLS)
    if words == {"none"}:
        return frozenset()
    if not words <= set(PROTOCOLS):
        raise AdminError(f"unknown protocol in {text!r}", f"use all, none or a list of: {', '.join(PROTOCOLS)}")
    return frozenset(words)


def subject_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A ban subject as a network; an IPv4-mapped IPv6 address becomes its IPv4 /32. ValueError
    when the text is no address or network (scope ids such as ``fe80::1%eth0`` included)."""
    if "%" in text:
        raise ValueError(text)
    network = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(mapped)
    return network


def normalise_subject(text: str) -> str:
    """An address or a network in canonical text (a /32 or /128 becomes the address)."""
    try:
        network = subject_network(text)
    except ValueError:
        raise AdminError(f"{text!r} is not an IP address or network", "write e.g. 192.0.2.7 or 2001:db8::/64") from None
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


@dataclass(frozen=True, slots=True)
class RangeSpec:
    name: str
    addresses: str  # CIDR, "LOW-HIGH" or one address
    priority: int = 20
    protocols: str = "all"
    deliveries: str = "all"
    auth_required: str = "local-external,external-external"
    tls_for_auth: bool = True
    expires_in: str | None = None


class AccessService:
    def __init__(self, store: Store, config: Config, clock: Clock | None = None) -> None:
        self.store = store
        self.config = config
        self.clock = clock or SystemClock()
        self.rules = ban_rules(config)

    # ranges

    async def ranges(self) -> list[IpRange]:
        return effective_ranges(await self.store.access.list_ranges())

    async def add_range(self, spec: RangeSpec) -> IpRange:
        try:
            lower, upper = bounds_of(spec.addresses)
            expires = self.clock.now() + parse_duration(spec.expires_in) if spec.expires_in else None
            new = IpRange(spec.name, spec.priority, lower, upper, parse_protocols(spec.protocols),
                          parse_directions(spec.deliveries), parse_directions(spec.auth_required),
                          spec.tls_for_auth, expires)
        except RangeError as exc:
            raise AdminError(str(exc), "give a CIDR network, LOW-HIGH addresses or one address") from None
        try:
            await self.store.access.add_range(new)
        except AlreadyExists:
            raise AdminError(f"an IP range named {spec.name!r} already exists",
                             "remove it first with `hardmail range remove NAME`, or pick another name") from None
        return new

    async def remove_range(self, name: str) -> None:
        try:
            await self.store.access.remove_range(name)
        except NotFound:
            builtin = any(r.builtin and r.name == name for r in await self.ranges())
            hint = ("built-in ranges cannot be removed; add a range with the same name to replace it"
                    if builtin else "`hardmail range list` shows the names")
            raise AdminError(f"no stored IP range named {name!r}", hint) from None

    async def test(self, ip: str) -> tuple[IpRange | None, list[Ban]]:
        address = normalise_subject(ip)
        found = matching_range(await self.ranges(), address, self.clock.now())
        bans = active_bans(await self.store.access.get_bans(ban_subjects(address)), self.clock.now())
        return found, bans

    # bans

    async def bans(self, include_expired: bool = False) -> list[Ban]:
        found = await self.store.access.list_bans()
        return found if include_expired else active_bans(found, self.clock.now())

    async def add_ban(self, subject: str, duration: str, reason: str) -> Ban:
        subject = normalise_subject(subject)
        now = self.clock.now()
        found = await self.store.access.get_bans([subject])
        offences = (found[0].offences if found else 0) + 1
        ban = Ban(subject, "admin", reason or "banned by an administrator", now, now + parse_duration(duration),
                  offences, by_admin=True)
        await self.store.access.put_ban(ban)
        log_ban(ban, "admin")
        return ban

    async def remove_ban(self, subject: str) -> str:
        subject = normalise_subject(subject)
        if not await self.store.access.remove_ban(subject):
            raise AdminError(f"{subject} is not banned", "`hardmail ban list` shows the bans")
        return subject

    async def explain(self, ip: str) -> list[str]:
        address = normalise_subject(ip)
        bans = await self.store.access.get_bans(ban_subjects(address))
        found = matching_range(await self.ranges(), address, self.clock.now())
        lines = explain(address, bans, self.clock.now(), self.rules)
        lines.append(f"range: {found.name}" if found else "no IP range matches: connections are refused")
        return lines

    async def nft_script(self, table: str = "hardmail") -> str:
        # Login bans stay out of the firewall: it would refuse the MX port and the owners whose
        # known addresses hardmail lets through; the server refuses their AUTH before any hashing.
        bans = [ban for ban in await self.bans() if ban.scope == "all"]
        return nft_script(bans, self.clock.now(), table, listener_ports(self.config))

    # login history

    async def logins(self, address: str, limit: int = 50) -> list[LoginEvent]:
        try:
            key = parse_address_arg(address).key
        except AddressError as exc:
            raise AdminError(str(exc), "give the account's address, e.g. alice@example.com") from None
        if await self.store.get_account(key) is None:
            raise AdminError(f"account {key} not found", "`hardmail account list` shows the accounts")
        return await self.store.credentials.list_login_events(key, limit)


async def last_successful_login(store: Store, address: str, scan: int = 1000) -> datetime | None:
    """When ``address`` last logged in successfully (among its newest ``scan`` history events)."""
    events = await store.credentials.list_login_events(address, scan)
    return next((e.at for e in events if e.kind == "login" and e.result == "success"), None)


LISTEN_KINDS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


def listener_ports(config: Config) -> list[int]:
    """The ports of every configured listener (SMTP, IMAP and POP3 alike: a ban for everything
    refuses them all)."""
    addresses = [a for kind in LISTEN_KINDS for a in getattr(config.listen, kind)]
    return sorted({port for port in (int(a.rpartition(":")[2]) for a in addresses) if port})


def _elements(bans: Iterable[Ban], version: int, now: float) -> list[str]:
    """Set elements of one family, each written from the parsed network (never the stored text,
    which an old row or another writer may hold in another form); unparseable subjects are left out."""
    out = []
    for ban in bans:
        try:
            network = subject_network(ban.subject)
        except ValueError:
            continue
        if network.version == version:
            element = network.network_address if network.num_addresses == 1 else network
            out.append(f"{element} timeout {max(1, int(ban.expires_at - now))}s")
    return out


def nft_script(bans: list[Ban], now: float, table: str, ports: list[int]) -> str:
    """An ``nft -f`` script: a table with one set per family holding the active bans (with their
    remaining time as element timeouts) and a chain dropping them on the mail ports."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    lines = [f"# hardmail bans at {stamp}; apply with: nft -f FILE", f"table inet {table}",
             f"delete table inet {table}", f"table inet {table} {{"]
    for name, kind, version in (("banned4", "ipv4_addr", 4), ("banned6", "ipv6_addr", 6)):
        lines += [f"  set {name} {{", f"    type {kind}", "    flags interval, timeout"]
        elements = _elements(bans, version, now)
        if elements:
            lines.append("    elements = { " + ", ".join(elements) + " }")
        lines.append("  }")
    port_list = ", ".join(str(p) for p in ports) or "25, 465, 587"
    lines += ["  chain input {", "    type filter hook input priority filter - 10; policy accept;",
              f"    ip saddr @banned4 tcp dport {{ {port_list} }} drop",
              f"    ip6 saddr @banned6 tcp dport {{ {port_list} }} drop", "  }", "}"]
    return "\n".join(lines) + "\n"
