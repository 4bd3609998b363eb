"""IP ranges with hMailServer semantics: which range an address falls in and what that range allows.

A range has a name, a priority (the highest matching range wins; on equal priority the narrower
range wins, then the name), a lower and an upper address (IPv4 or IPv6, both of one family), the
protocols it may connect to, the four delivery directions it may use, which of those directions
require SMTP AUTH, whether AUTH requires TLS, and an optional expiry. Built-in defaults cover the
whole Internet (IPv4 and IPv6) and this computer; a stored range of the same name replaces a
built-in one. Pure functions: no I/O, time passed in.

:class:`RangeMatcher` remembers the winning range per address for one set of ranges (the answer
changes only when a range expires, and the memo is rebuilt then), and :func:`parse_networks` with
:func:`in_parsed_networks` test an address against networks parsed once.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROTOCOLS = ("smtp", "submission", "pop3", "imap")
# The listener kinds, mapped to the protocol permission (a range's protocol flag) they need.
LISTENER_PROTOCOL = {"smtp": "smtp", "submission": "submission", "submissions": "submission",
                     "imap": "imap", "imaps": "imap", "pop3": "pop3", "pop3s": "pop3"}


class Direction(Enum):
    """Delivery direction: is the sender's domain ours, is the recipient's domain ours."""

    LOCAL_LOCAL = "local-local"
    LOCAL_EXTERNAL = "local-external"
    EXTERNAL_LOCAL = "external-local"
    EXTERNAL_EXTERNAL = "external-external"

    @staticmethod
    def of(sender_local: bool, recipient_local: bool) -> Direction:
        if sender_local:
            return Direction.LOCAL_LOCAL if recipient_local else Direction.LOCAL_EXTERNAL
        return Direction.EXTERNAL_LOCAL if recipient_local else Direction.EXTERNAL_EXTERNAL


ALL_DIRECTIONS = frozenset(Direction)
# Like hMailServer's defaults: relaying (to external recipients) needs SMTP AUTH.
RELAY_NEEDS_AUTH = frozenset({Direction.LOCAL_EXTERNAL, Direction.EXTERNAL_EXTERNAL})
# hMailServer's "Internet" range: also local -> local needs AUTH, so nobody on the Internet can
# hand our users mail claiming to come from one of our own domains without logging in.
INTERNET_NEEDS_AUTH = RELAY_NEEDS_AUTH | {Direction.LOCAL_LOCAL}


class RangeError(ValueError):
    """A range definition that cannot be used (the text says what is wrong)."""


@dataclass(frozen=True, slots=True)
class IpRange:
    name: str
    priority: int
    lower: str
    upper: str
    protocols: frozenset[str] = frozenset(PROTOCOLS)
    deliveries: frozenset[Direction] = ALL_DIRECTIONS
    auth_required: frozenset[Direction] = RELAY_NEEDS_AUTH
    tls_for_auth: bool = True
    expires_at: float | None = None  # seconds since the epoch; None never expires
    builtin: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        low, high = parse_address(self.lower), parse_address(self.upper)
        if low.version != high.version:
            raise RangeError(f"range {self.name!r} mixes IPv4 and IPv6 bounds")
        if low > high:  # type: ignore[operator]  # same family, checked above
            raise RangeError(f"range {self.name!r}: lower bound {self.lower} is above upper bound {self.upper}")
        unknown = self.protocols - set(PROTOCOLS)
        if unknown:
            raise RangeError(f"unknown protocol(s) {sorted(unknown)}; use {', '.join(PROTOCOLS)}")

    def contains(self, ip: IpAddress) -> bool:
        low, high = parse_address(self.lower), parse_address(self.upper)
        return low.version == ip.version and low <= ip <= high  # type: ignore[operator]

    def size(self) -> int:
        return int(parse_address(self.upper)) - int(parse_address(self.lower))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def parse_address(text: str) -> IpAddress:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise RangeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def bounds_of(spec: str) -> tuple[str, str]:
    """``10.0.0.0/8``, ``10.0.0.1-10.0.0.9`` or a single address → (lower, upper) as text."""
    if "-" in spec:
        low, _, high = spec.partition("-")
        return str(parse_address(low)), str(parse_address(high))
    if "/" in spec:
        try:
            network = ipaddress.ip_network(spec.strip(), strict=False)
        except ValueError:
            raise RangeError(f"{spec!r} is not a network (for example 192.0.2.0/24 or 2001:db8::/32)") from None
        return str(network.network_address), str(network.broadcast_address)
    address = str(parse_address(spec))
    return address, address


DEFAULT_RANGES = (
    IpRange("Internet", 10, "0.0.0.0", "255.255.255.255", auth_required=INTERNET_NEEDS_AUTH, builtin=True),
    IpRange("Internet (IPv6)", 10, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            auth_required=INTERNET_NEEDS_AUTH, builtin=True),
    IpRange("My computer", 15, "127.0.0.0", "127.255.255.255", builtin=True),
    IpRange("My computer (IPv6)", 15, "::1", "::1", builtin=True),
)


def effective_ranges(stored: Iterable[IpRange], defaults: Iterable[IpRange] = DEFAULT_RANGES) -> list[IpRange]:
    """The stored ranges plus every built-in one whose name no stored range takes."""
    stored = list(stored)
    taken = {r.name.casefold() for r in stored}
    return stored + [r for r in defaults if r.name.casefold() not in taken]


def plain_address(ip: str) -> IpAddress | None:
    """``ip`` parsed, an IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) unmapped;
    None when it is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def matching_range(ranges: Iterable[IpRange], ip: str, now: float) -> IpRange | None:
    """The winning range for ``ip``: highest priority, then narrowest, then name; expired ones skipped."""
    address = plain_address(ip)
    if address is None:
        return None
    found = [r for r in ranges if not r.expired(now) and r.contains(address)]
    if not found:
        return None
    return min(found, key=lambda r: (-r.priority, r.size(), r.name))


def next_expiry(ranges: Iterable[IpRange], now: float) -> float:
    """The first time after ``now`` at which one of ``ranges`` expires (infinity when none will):
    until then :func:`matching_range` gives every address the answer it gives at ``now``."""
    return min((r.expires_at for r in ranges if r.expires_at is not None and r.expires_at > now), default=math.inf)


MEMO_ENTRIES = 10_000


class RangeMatcher:
    """:func:`matching_range` over one set of ranges, remembered per address.

    A range's expiry is the only thing that makes the answer depend on the time, so the memo
    holds from the time it was started until the next expiry of a range (or an earlier time,
    should the clock go back) and is then started again. It is emptied when it reaches
    ``max_entries`` addresses, so a flood of different addresses cannot grow it.
    """

    def __init__(self, ranges: Iterable[IpRange], max_entries: int = MEMO_ENTRIES) -> None:
        self.ranges = tuple(ranges)
        self.max_entries = max_entries
        self._memo: dict[str, IpRange | None] = {}
        self._valid = (math.inf, -math.inf)  # [from, until) in seconds since the epoch: empty

    def __len__(self) -> int:
        return len(self._memo)

    def __repr__(self) -> str:
        return f"RangeMatcher({len(self.ranges)} ranges, {len(self._memo)} remembered)"

    def match(self, ip: str, now: float) -> IpRange | None:
        """What :func:`matching_range` answers for ``ip`` at ``now``."""
        start, until = self._valid
        if not start <= now < until:
            self._memo.clear()
            self._valid = (now, next_expiry(self.ranges, now))
        try:
            return self._memo[ip]
        except KeyError:
            pass
        if len(self._memo) >= self.max_entries:
            self._memo.clear()
        found = self._memo[ip] = matching_range(self.ranges, ip, now)
        return found


def parse_networks(networks: Iterable[str]) -> tuple[IpNetwork, ...]:
    """``10.0.0.0/8``-style networks (host bits allowed), parsed once for :func:`in_parsed_networks`."""
    return tuple(ipaddress.ip_network(net, strict=False) for net in networks)


def in_parsed_networks(ip: str, networks: Sequence[IpNetwork]) -> bool:
    """Whether ``ip`` (an IPv4-mapped address as its IPv4 one) is in one of ``networks``."""
    address = plain_address(ip) if networks else None
    return address is not None and any(address in network for network in networks)


def connection_allowed(found: IpRange | None, listener: str) -> bool:
    """Whether a client in ``found`` may connect to ``listener`` (no matching range: refused)."""
    protocol = LISTENER_PROTOCOL.get(listener, listener)
    return found is not None and protocol in found.protocols


@dataclass(frozen=True, slots=True)
class DeliveryRule:
    allowed: bool
    auth_required: bool


def delivery_rule(found: IpRange, direction: Direction) -> DeliveryRule:
    return DeliveryRule(direction in found.deliveries, direction in found.auth_required)


def describe(found: IpRange) -> list[str]:
    """Readable lines saying what a range allows, for ``hardmail range test``."""
    lines = [
        f"range: {found.name} (priority {found.priority}, {found.lower} - {found.upper})"
        + (" [built-in]" if found.builtin else ""),
        "connections: " + (", ".join(p for p in PROTOCOLS if p in found.protocols) or "none"),
    ]
    for direction in Direction:
        allowed = direction in found.deliveries
        auth = " (SMTP AUTH required)" if direction in found.auth_required else ""
        lines.append(f"deliver {direction.value}: {'allowed' + auth if allowed else 'refused'}")
    lines.append("AUTH requires TLS: " + ("yes" if found.tls_for_auth else "no"))
    return lines
