"""Implicit TLS (465, 993, 995): a ClientHello that arrives while the connect checks still run is
not lost, on uvloop (which reads although the channel paused reading) and on asyncio."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable

import pytest
import trustme

from hardmail.server.channel import Channel

uvloop = pytest.importorskip("uvloop")


def _client(port: int, ca: trustme.CA, answers: list[bytes]) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"ping\r\n")
        answers.append(tls.recv(100))


async def _serve_one(server_context: ssl.SSLContext, port_ready: Callable[[int], None]) -> bytes:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[Channel] = loop.create_future()

    def make() -> Channel:
        channel = Channel(implicit_tls=True)
        accepted.set_result(channel)
        return channel

    server = await loop.create_server(make, "127.0.0.1", 0)
    port_ready(server.sockets[0].getsockname()[1])
    channel = await asyncio.wait_for(accepted, 20)
    await channel.connected
    for _ in range(200):  # connect checks that take a while: the ClientHello is sent meanwhile
        if channel.has_unread():
            break
        await asyncio.sleep(0.005)
    await channel.start_tls(server_context, timeout=10)
    line = await asyncio.wait_for(channel.read(), 10)
    channel.write(b"pong " + line)
    await channel.drain()
    channel.close()
    server.close()
    return line


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
def test_a_client_hello_sent_before_the_handshake_starts_is_kept(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    answers: list[bytes] = []
    started = threading.Event()
    ports: list[int] = []
    client = threading.Thread(target=lambda: (started.wait(20), _client(ports[0], ca, answers)))
    client.start()

    def port_ready(port: int) -> None:
        ports.append(port)
        started.set()

    loop = loop_factory()
    try:
        line = loop.run_until_complete(asyncio.wait_for(_serve_one(server_context, port_ready), 30))
    finally:
        loop.close()
    client.join(30)
    assert line == b"ping\r\n"
    assert answers == [b"pong ping\r\n"]
