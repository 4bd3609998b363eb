"""The PROXY protocol at the socket edge: on listeners that enable it, read the header a trusted
proxy sends first and make the session see the real client address.

A connection from an address outside ``access.proxy_protocol.trusted_proxies`` is dropped without
a reply, as is one whose header is malformed or late: a listener behind a proxy must never take a
client's word for its own address.
"""

from __future__ import annotations

import asyncio

from hardmail.config.schema import ProxyProtocolSection
from hardmail.ops.log import log_event
from hardmail.policy.relay import in_networks
from hardmail.proto.proxy import NEED_DATA, ProxyError, ProxyHeader, ProxyHeaderParser
from hardmail.server.channel import Channel


async def _read_header(channel: Channel) -> ProxyHeader:
    parser = ProxyHeaderParser()
    while True:
        event = parser.next_event()
        if event != NEED_DATA:
            assert isinstance(event, ProxyHeader)
            channel.unread(parser.remaining)
            return event
        data = await channel.read()
        if not data:
            raise ProxyError("connection closed before the PROXY header was complete")
        parser.receive_data(data)


def _hold_for_implicit_tls(channel: Channel) -> None:
    """Implicit TLS: client bytes must reach the TLS layer, which starts after the connect checks."""
    if not channel.implicit_tls:
        return
    channel.hold_reading(True)
    if channel.has_unread():
        # asyncio cannot hand bytes already read to a TLS handshake: the client must retry.
        raise ProxyError("client data arrived in the same packet as the PROXY header on an implicit-TLS listener")


async def accept_proxied(channel: Channel, settings: ProxyProtocolSection) -> bool:
    """Read the PROXY header; False when the connection must be dropped."""
    proxy_ip, proxy_port = channel.peer()
    if not in_networks(proxy_ip, settings.trusted_proxies):
        log_event("proxy.refused", level="warning", peer=proxy_ip, reason="not a trusted proxy")
        return False
    try:
        channel.hold_reading(False)
        async with asyncio.timeout(settings.header_timeout):
            header = await _read_header(channel)
        _hold_for_implicit_tls(channel)
    except (ProxyError, TimeoutError) as exc:
        log_event("proxy.refused", level="warning", peer=proxy_ip, reason=str(exc) or "header timeout")
        return False
    if header.source is not None:
        channel.set_real_peer(header.source)
    log_event("proxy.accepted", level="debug", proxy=f"{proxy_ip}:{proxy_port}", version=header.version,
              client=header.source[0] if header.source else None)
    return True
