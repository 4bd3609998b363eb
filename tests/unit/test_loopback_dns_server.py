"""The test DNS server binds UDP and TCP on one port: a port busy for TCP is never used."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from support import dns_server
from support.dns_server import LoopbackDnsServer, _free_port


@pytest.fixture
def tcp_only_busy_port() -> Iterator[int]:
    """A port with a TCP listener on it and (on this loopback) no UDP socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_taken_between_pick_and_bind_is_picked_again(
    tcp_only_busy_port: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    picks = iter([tcp_only_busy_port])
    real = dns_server._free_port
    monkeypatch.setattr(dns_server, "_free_port", lambda *args: next(picks, None) or real(*args))
    with LoopbackDnsServer({("a.test", "A"): ["192.0.2.1"]}) as server:
        assert server.port != tcp_only_busy_port


def test_free_port_is_free_for_tcp_and_udp() -> None:
    port = _free_port()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", port))
