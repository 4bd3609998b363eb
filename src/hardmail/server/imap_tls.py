"""The TLS handshake of the implicit-TLS IMAP listener when the client's first TLS bytes were read
before the session started TLS.

The channel of an implicit-TLS listener pauses reading when the connection is made, so that the
ClientHello stays in the socket until the connect checks are done; :meth:`Channel.start_tls` then
drops anything received in the clear (right for STARTTLS, RFC 9051 6.2.1). Under uvloop a
connection accepted while its data is already there gets that data at once, pause or not: the
ClientHello is in the channel, :meth:`Channel.start_tls` would drop it and the handshake would
wait for bytes the client already sent (the connection hangs until the handshake timeout). Here
those bytes go to the TLS protocol first. (The same fix belongs in ``Channel.start_tls`` for every
implicit-TLS kind; this module keeps it to IMAPS until then.)
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto
from typing import cast

from hardmail.server.channel import Channel, ChannelClosed


async def start_implicit_tls(channel: Channel, context: ssl.SSLContext, timeout: float) -> None:
    early = await channel.read() if channel.has_unread() else b""
    if not early:
        await channel.start_tls(context, timeout)
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    protocol = sslproto.SSLProtocol(loop, channel, context, waiter, server_side=True, call_connection_made=False,
                                    ssl_handshake_timeout=timeout)  # type: ignore[arg-type]  # seconds, float
    transport = channel.transport
    if transport is None or transport.is_closing():
        raise ChannelClosed("connection closed before the TLS handshake")
    transport.pause_reading()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    _feed(protocol, early)
    transport.resume_reading()
    try:
        await waiter
    except BaseException:
        transport.close()
        raise
    channel.transport = cast(asyncio.Transport, protocol._app_transport)


def _feed(protocol: sslproto.SSLProtocol, data: bytes) -> None:
    """Hand ``data`` to the TLS protocol as if the socket had just delivered it."""
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]
