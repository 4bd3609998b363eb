"""The PROXY protocol header (HAProxy's PROXY protocol, versions 1 and 2), sans-IO.

A load balancer in front of the server sends one header before the client's bytes, naming the real
client address, so bans and limits apply to the client and not to the proxy. Feed bytes with
:meth:`ProxyHeaderParser.receive_data`; :meth:`ProxyHeaderParser.next_event` returns ``NEED_DATA``,
a :class:`ProxyHeader` or raises :class:`ProxyError`. Bytes after the header are in ``remaining``.

Hand-written: the header is a few dozen bytes of fixed layout, and the PyPI parsers are either
tied to a socket or unmaintained. Reference: haproxy.org/download/2.9/doc/proxy-protocol.txt
(sections 2.1 for version 1, 2.2 for version 2).

Addresses come out in one canonical form: an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``) is
given as its IPv4 address, so bans, ranges and trusted networks written in IPv4 apply to it. A v1
address must be plain: no IPv6 scope id (``fe80::1%eth0``), nothing the strict parser refuses.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

V1_PREFIX: Final = b"PROXY "
V1_MAX_LENGTH: Final = 107  # proxy-protocol.txt 2.1: the longest v1 line, CRLF included
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH: Final = 16
V2_MAX_PAYLOAD: Final = 4096  # TLVs may follow the addresses; anything longer is refused
NEED_DATA: Final = "NEED_DATA"


class ProxyError(ValueError):
    """The bytes are not a valid PROXY header (the connection must be dropped)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    source: tuple[str, int] | None  # None: LOCAL (v2) or UNKNOWN (v1): keep the proxy's own address
    destination: tuple[str, int] | None


class ProxyHeaderParser:
    def __init__(self) -> None:
        self._buffer = b""
        self.remaining = b""
        self._done = False

    def receive_data(self, data: bytes) -> None:
        if self._done:
            self.remaining += data
        else:
            self._buffer += data

    def next_event(self) -> ProxyHeader | str:
        if self._done:
            raise ProxyError("the header was already read")
        header = self._try_parse()
        if header is None:
            return NEED_DATA
        self._done = True
        return header

    def _try_parse(self) -> ProxyHeader | None:
        data = self._buffer
        probe = min(len(data), len(V2_SIGNATURE))
        if data[:probe] == V2_SIGNATURE[:probe] and probe == len(V2_SIGNATURE):
            return self._parse_v2()
        if data[:probe] == V2_SIGNATURE[:probe]:
            return None
        if data[: min(len(data), len(V1_PREFIX))] != V1_PREFIX[: min(len(data), len(V1_PREFIX))]:
            raise ProxyError("the connection did not start with a PROXY header")
        return self._parse_v1()

    def _finish(self, length: int, header: ProxyHeader) -> ProxyHeader:
        self.remaining = self._buffer[length:]
        self._buffer = b""
        return header

    # version 1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"

    def _parse_v1(self) -> ProxyHeader | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) >= V1_MAX_LENGTH:
                raise ProxyError("PROXY v1 line too long")
            return None
        if end + 2 > V1_MAX_LENGTH:
            raise ProxyError("PROXY v1 line too long")
        return self._finish(end + 2, parse_v1_line(self._buffer[:end]))

    # version 2: signature, version/command, family/transport, length, addresses, TLVs

    def _parse_v2(self) -> ProxyHeader | None:
        if len(self._buffer) < V2_FIXED_LENGTH:
            return None
        version_command, family, length = struct.unpack("!BBH", self._buffer[12:16])
        if version_command >> 4 != 2:
            raise ProxyError("PROXY v2 header with an unknown version")
        if length > V2_MAX_PAYLOAD:
            raise ProxyError("PROXY v2 header too long")
        if len(self._buffer) < V2_FIXED_LENGTH + length:
            return None
        payload = self._buffer[V2_FIXED_LENGTH:V2_FIXED_LENGTH + length]
        header = parse_v2_payload(version_command & 0x0F, family, payload)
        return self._finish(V2_FIXED_LENGTH + length, header)


def canonical_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """The text every layer keys on: IPv4-mapped IPv6 unmapped, scope ids never kept."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _address(text: bytes, version: int) -> str:
    # A scope id ("%...") would carry arbitrary bytes into logs, bans and firewall scripts.
    if b"%" in text or not text.isascii():
        raise ProxyError("PROXY v1 header with an invalid address")
    try:
        address = ipaddress.IPv4Address(text.decode()) if version == 4 else ipaddress.IPv6Address(text.decode())
    except ValueError:
        raise ProxyError(f"PROXY v1 header with an invalid IPv{version} address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ProxyError("PROXY v1 header with an invalid address")
    return canonical_address(address)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text.startswith(b"0")) or int(text) > 65535:
        raise ProxyError("PROXY v1 header with an invalid port")
    return int(text)


def parse_v1_line(line: bytes) -> ProxyHeader:
    """One v1 line without its CRLF."""
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, None, None)
    if len(parts) != 6 or parts[0] != b"PROXY" or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyError("malformed PROXY v1 line")
    version = 4 if parts[1] == b"TCP4" else 6
    source = (_address(parts[2], version), _port(parts[4]))
    destination = (_address(parts[3], version), _port(parts[5]))
    return ProxyHeader(1, source, destination)


# family/transport byte -> (address layout, its length): TCP and UDP over IPv4, then over IPv6
_V2_FAMILIES = {0x11: ("!4s4sHH", 12), 0x12: ("!4s4sHH", 12), 0x21: ("!16s16sHH", 36), 0x22: ("!16s16sHH", 36)}


def parse_v2_payload(command: int, family: int, payload: bytes) -> ProxyHeader:
    """The part after the 16 fixed bytes; ``command`` 0 is LOCAL, 1 is PROXY."""
    if command == 0:  # LOCAL: the proxy's own connection (health checks)
        return ProxyHeader(2, None, None)
    if command != 1:
        raise ProxyError("PROXY v2 header with an unknown command")
    if family not in _V2_FAMILIES:  # UNSPEC or UNIX sockets: no IP address to use
        return ProxyHeader(2, None, None)
    layout, needed = _V2_FAMILIES[family]
    if len(payload) < needed:
        raise ProxyError("PROXY v2 address block too short")
    source, destination, source_port, destination_port = struct.unpack(layout, payload[:needed])
    return ProxyHeader(2, (canonical_address(ipaddress.ip_address(source)), source_port),
                       (canonical_address(ipaddress.ip_address(destination)), destination_port))
