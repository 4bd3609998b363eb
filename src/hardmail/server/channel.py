"""The socket edge of one connection: an asyncio Protocol with an awaitable read, flow-controlled
writes and an in-place STARTTLS upgrade.

Hand-written rather than asyncio streams because STARTTLS must drop every byte received before the
handshake (RFC 3207 4.2, CVE-2011-0411 class) and StreamReader keeps such bytes in a private buffer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections import deque
from typing import Any, cast

READ_HIGH_WATER = 256 * 1024  # stop reading from the socket when this much is unread
CLOSE_LINGER = 10.0  # seconds a closing connection may take to flush its last replies


def plain_address(text: str) -> str:
    """An address in canonical text, IPv4-mapped IPv6 unmapped; other text unchanged."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


class ChannelClosed(Exception):
    pass


class Channel(asyncio.Protocol):
    def __init__(self, implicit_tls: bool = False) -> None:
        # Implicit TLS: leave the ClientHello in the socket until start_tls (connect checks may await first).
        self.implicit_tls = implicit_tls
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = self._loop.create_future()
        self.lost: asyncio.Future[None] = self._loop.create_future()  # done once the connection is lost
        self._real_peer: tuple[str, int] | None = None  # the client named by a PROXY header
        self._tls_started = False

    # asyncio.Protocol callbacks ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without subclassing it: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        if self.implicit_tls:
            self.transport.pause_reading()
        if not self.connected.done():
            self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self.implicit_tls and not self._tls_started and self.transport is not None:
            # uvloop starts reading after connection_made whatever it asked: hold the ClientHello here.
            self.transport.pause_reading()
            self._reading_paused = True
        elif self._buffered > READ_HIGH_WATER and self.transport and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        # Half-close: keep the transport so replies to commands already received still go out. Over
        # TLS asyncio ignores the answer (and warns), and a TLS close_notify ends the session anyway.
        return self.ssl_object() is None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._eof = True
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # session side ----------------------------------------------------------------------
    async def read(self) -> bytes:
        """Everything received so far, waiting for at least one byte; b"" at end of stream."""
        while not self._chunks and not self._eof:
            self._read_waiter = self._loop.create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    @property
    def closing(self) -> bool:
        """The connection is gone (or going): nothing written now would reach the client."""
        return self.transport is None or self.transport.is_closing()

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def must_drain(self) -> bool:
        """The transport asked to stop writing: :meth:`drain` would wait."""
        return self._write_paused and not self._eof

    async def drain(self) -> None:
        while self._write_paused and not self._eof:
            self._write_waiter = self._loop.create_future()
            try:
                await self._write_waiter
            finally:
                self._write_waiter = None

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Upgrade to TLS as the server. After STARTTLS, bytes received before the handshake are
        discarded (RFC 3207 4.2); on an implicit-TLS listener they are the start of the handshake
        (a ClientHello read before the session asked for it) and go to the TLS layer."""
        assert self.transport is not None
        held = b"".join(self._chunks) if self.implicit_tls else b""
        self._chunks.clear()
        self._buffered = 0
        self._tls_started = True
        loop = asyncio.get_running_loop()
        if held:
            # Runs after start_tls below has paused reading and put the TLS protocol in place (in
            # its first, synchronous step), before that protocol's connection_made: the bytes wait
            # in its incoming buffer and the handshake starts with them.
            loop.call_soon(_feed_tls_layer, self.transport, held)
        self._reading_paused = False
        # Awaited at once: its first step pauses reading, so no byte can arrive in between.
        transport = await loop.start_tls(
            self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout)
        if transport is None:
            raise ChannelClosed("connection closed during TLS handshake")
        self.transport = transport

    def ssl_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        obj = self.transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    def set_real_peer(self, peer: tuple[str, int]) -> None:
        """The client address a trusted proxy reported (PROXY protocol); peer() returns it from now on."""
        self._real_peer = peer

    def hold_reading(self, hold: bool) -> None:
        """Stop (True) or restart (False) taking bytes from the socket, e.g. around a PROXY header."""
        if self.transport is None:
            return
        if hold:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def has_unread(self) -> bool:
        return bool(self._chunks)

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the unread ones (what followed a PROXY header)."""
        if data:
            self._chunks.appendleft(data)
            self._buffered += len(data)

    def peer(self) -> tuple[str, int]:
        """The client's (address, port); an IPv4 client of a dual-stack listener comes as
        ``::ffff:a.b.c.d`` and is given as ``a.b.c.d``, so IPv4 bans and ranges meet it."""
        if self._real_peer is not None:
            return (plain_address(self._real_peer[0]), self._real_peer[1])
        info = self.transport.get_extra_info("peername") if self.transport else None
        if not info:
            return ("unknown", 0)
        return (plain_address(str(info[0])), int(info[1]))

    def close(self, linger: float = CLOSE_LINGER) -> None:
        """Close after what is written has gone out; a client that does not take it within
        ``linger`` seconds is cut off (a close would otherwise wait for it for ever)."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.close()
        if self.transport.get_write_buffer_size():
            self._loop.call_later(linger, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def interrupt(self, exc: BaseException) -> None:
        """Make a pending :meth:`read` or :meth:`drain` raise ``exc`` (a session's timeout)."""
        for waiter in (self._read_waiter, self._write_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    def _wake_reader(self) -> None:
        if self._read_waiter is not None and not self._read_waiter.done():
            self._read_waiter.set_result(None)

    def _wake_writer(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)


def _feed_tls_layer(transport: asyncio.Transport, data: bytes) -> None:
    """Give ``data`` to the TLS protocol now reading ``transport`` (asyncio's and uvloop's
    SSLProtocol are buffered protocols)."""
    protocol: Any = transport.get_protocol()
    if transport.is_closing() or isinstance(protocol, Channel):
        return
    if not hasattr(protocol, "get_buffer"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(len(view))
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]
