"""A real DNS server process-free but real-socket: dnslib serving a test zone on 127.0.0.1 (UDP and TCP).

Zone format is the one ``hardmail.msgauth.dns.StaticResolver`` takes:
``{("name", "TYPE"): ["rdata text", ...] | "NXDOMAIN" | "TIMEOUT"}``. A TIMEOUT entry is never answered.
With ``authenticated=True`` every answer carries the AD flag, as a DNSSEC-validating resolver's
would (RFC 4035 3.2.3), so DANE applies to the zone's TLSA records.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from dnslib import QTYPE, RCODE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zone: Mapping[tuple[str, str], Any], authenticated: bool = False) -> None:
        self.zone = {(n.rstrip(".").lower(), t.upper()): v for (n, t), v in zone.items()}
        self.authenticated = authenticated

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord | None:
        reply = request.reply()
        reply.header.ad = int(self.authenticated)
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        value = self.zone.get((name, qtype))
        if value == "TIMEOUT":
            return None
        if value == "NXDOMAIN" or (value is None and not any(n == name for n, _ in self.zone)):
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if value is None and qtype != "CNAME":
            name, value = self._follow_cname(reply, name, qtype)
        for text in value or ():
            reply.add_answer(*RR.fromZone(f"{name}. 300 IN {qtype} {text}"))
        return reply

    def _follow_cname(self, reply: DNSRecord, name: str, qtype: str) -> tuple[str, Any]:
        """Add a CNAME chain (at most 8 links) to the answer, as a recursive resolver would."""
        for _ in range(8):
            target = self.zone.get((name, "CNAME"))
            if not target:
                break
            reply.add_answer(*RR.fromZone(f"{name}. 300 IN CNAME {target[0]}"))
            name = target[0].rstrip(".").lower()
            if (name, qtype) in self.zone:
                return name, self.zone[(name, qtype)]
        return name, None


BIND_TRIES = 20  # a port found free can be taken by another process before the servers bind it


def _free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP: the kernel picks a free TCP port, then UDP is tried on it
    (a port free for UDP alone may be in use for TCP, the old cause of "Address already in use")."""
    for _ in range(BIND_TRIES):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port on {host} was free for both TCP and UDP after {BIND_TRIES} tries")


class LoopbackDnsServer:
    """Context manager: UDP and TCP DNS servers on 127.0.0.1 at one free port."""

    host = "127.0.0.1"

    def __init__(self, zone: Mapping[tuple[str, str], Any], *, authenticated: bool = False) -> None:
        self.resolver = _ZoneResolver(zone, authenticated)
        self.port, self.servers = self._bind()

    def _bind(self) -> tuple[int, list[DNSServer]]:
        """Both servers on one port, picking again (a bounded number of times) if it was taken."""
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for _ in range(BIND_TRIES):
            port, servers = _free_port(self.host), []
            try:
                for tcp in (False, True):
                    servers.append(DNSServer(self.resolver, address=self.host, port=port, tcp=tcp, logger=quiet))
            except OSError:
                for server in servers:
                    server.server.server_close()
                continue
            return port, servers
        raise OSError(f"could not bind DNS servers on {self.host} after {BIND_TRIES} tries")

    def __enter__(self) -> LoopbackDnsServer:
        for server in self.servers:
            server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()
