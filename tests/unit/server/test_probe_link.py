"""The audit's client connection against a tiny loopback peer: whole SMTP replies, overlong lines
cut, EOF and deadlines read as None, never an exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hardmail.server.probe_link import MAX_LINE, ProbeLink

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_multiline_reply_and_command(peer) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readline()
        writer.write(b"250-first\r\n250-second\r\n250 last\r\n")
        await writer.drain()
        await reader.read()

    port = await peer(handler)
    async with await ProbeLink.open("127.0.0.1", port, timeout=5) as link:
        greeting = await link.read_smtp_reply()
        assert greeting is not None and greeting.code == 220
        reply = await link.command("EHLO x")
        assert reply is not None and reply.lines == ("first", "second", "last") and reply.positive


async def test_an_overlong_line_is_cut_and_eof_is_none(peer) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 " + b"x" * (MAX_LINE * 10) + b"\r\n")
        await writer.drain()
        writer.close()

    port = await peer(handler)
    async with await ProbeLink.open("127.0.0.1", port, timeout=5) as link:
        line = await link.read_line()
        assert line is not None and len(line) <= MAX_LINE + 2
        assert await link.read_line() is None
        assert await link.read_smtp_reply() is None


async def test_a_silent_peer_reads_as_none(peer) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    port = await peer(handler)
    async with await ProbeLink.open("127.0.0.1", port, timeout=0.2) as link:
        assert await link.read_smtp_reply() is None
        assert await link.read_pending(0.1) == b""


async def test_a_reply_that_is_no_smtp_reply_is_none(peer) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK imap here\r\n")
        await writer.drain()
        await reader.read()

    port = await peer(handler)
    async with await ProbeLink.open("127.0.0.1", port, timeout=5) as link:
        assert await link.read_smtp_reply() is None
