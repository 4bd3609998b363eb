"""The PROXY protocol parser (v1 and v2), fed whole and one byte at a time."""

from __future__ import annotations

import socket
import struct

import pytest

from hardmail.proto.proxy import NEED_DATA, V2_SIGNATURE, ProxyError, ProxyHeader, ProxyHeaderParser


def v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(payload)) + payload


def v2_tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    payload = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return v2(1, 0x11, payload)


def v2_tcp6(src: str, dst: str, sport: int, dport: int) -> bytes:
    payload = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
               + struct.pack("!HH", sport, dport))
    return v2(1, 0x21, payload)


VALID = [
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\nEHLO x\r\n", ("192.0.2.1", 56324), b"EHLO x\r\n"),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 587\r\n", ("2001:db8::1", 4000), b""),
    (b"PROXY UNKNOWN\r\n", None, b""),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nQUIT\r\n", None, b"QUIT\r\n"),
    (v2_tcp4("203.0.113.5", "192.0.2.25", 40000, 25) + b"EHLO", ("203.0.113.5", 40000), b"EHLO"),
    (v2_tcp4("203.0.113.5", "192.0.2.25", 1, 25, tlvs=b"\x04\x00\x01x"), ("203.0.113.5", 1), b""),
    (v2_tcp6("2001:db8::5", "2001:db8::25", 1234, 465) + b"\x16\x03", ("2001:db8::5", 1234), b"\x16\x03"),
    (v2(0, 0x00, b""), None, b""),  # LOCAL: a health check by the proxy itself
    (v2(1, 0x31, b"\x00" * 216), None, b""),  # UNIX socket: no address to take
    # IPv4-mapped IPv6 comes out as the IPv4 address, in both versions
    (b"PROXY TCP6 ::ffff:192.0.2.5 2001:db8::2 4000 25\r\n", ("192.0.2.5", 4000), b""),
    (v2_tcp6("::ffff:192.0.2.5", "2001:db8::25", 1234, 25), ("192.0.2.5", 1234), b""),
]


@pytest.mark.parametrize("byte_at_a_time", [False, True])
@pytest.mark.parametrize(("data", "source", "rest"), VALID)
def test_valid_headers(data: bytes, source: tuple[str, int] | None, rest: bytes, byte_at_a_time: bool) -> None:
    parser = ProxyHeaderParser()
    chunks = [data[i:i + 1] for i in range(len(data))] if byte_at_a_time else [data]
    header = None
    for chunk in chunks:
        parser.receive_data(chunk)
        if header is None:
            event = parser.next_event()
            header = event if isinstance(event, ProxyHeader) else None
            assert header is not None or event == NEED_DATA
    assert header is not None and header.source == source
    assert parser.remaining == rest


INVALID = [
    b"EHLO client.example\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
    b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 25\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 025 25\r\n",
    b"PROXY TCP5 192.0.2.1 198.51.100.2 1 25\r\n",
    b"PROXY " + b"1" * 120,
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,  # version 3
    V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\x00" * 12,  # unknown command
    v2(1, 0x11, b"\x00" * 4),  # address block too short
    V2_SIGNATURE + b"\x21\x11\xff\xff",  # too long
    b"PROXY TCP6 fe80::1%a;}x 2001:db8::2 4000 25\r\n",  # a scope id carrying nftables syntax
    b"PROXY TCP6 fe80::1%eth0 2001:db8::2 4000 25\r\n",
    b"PROXY TCP6 2001:db8::2 fe80::1%1 4000 25\r\n",
    b"PROXY TCP4 192.0.2.01 198.51.100.2 1 25\r\n",  # leading zero: not strict
    b"PROXY TCP4 \xc2\xb9.0.2.1 198.51.100.2 1 25\r\n",  # a non-ASCII digit
]


@pytest.mark.parametrize("byte_at_a_time", [False, True])
@pytest.mark.parametrize("data", INVALID)
def test_invalid_headers_are_refused(data: bytes, byte_at_a_time: bool) -> None:
    parser = ProxyHeaderParser()
    chunks = [data[i:i + 1] for i in range(len(data))] if byte_at_a_time else [data]
    with pytest.raises(ProxyError):
        for chunk in chunks:
            parser.receive_data(chunk)
            assert parser.next_event() == NEED_DATA
