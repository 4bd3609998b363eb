"""POP3 limits over real sockets: a client that does not read its responses cannot grow the
server's memory, the login timeout, connections per address, long lines, and server shutdown.
"""

from __future__ import annotations

import asyncio
import poplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.server.pop3_session import Pop3Session
from support.live import ALICE, ALICE_PASSWORD, RawClient, ServerThread
from support.pop3 import deliver, message, pop3_server, pop3s_login

BIG = 1_500_000


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerThread]:
    sections = {"smtp": {"max_message_size": 4_000_000}, "pop3": {"login_timeout": 2.0, "connections_per_ip": 3}}
    with pop3_server(tmp_path / "data", **sections) as server:  # type: ignore[arg-type]
        deliver(server, ALICE, message(1, (b"y" * 78 + b"\r\n") * (BIG // 80)))
        yield server


def _pop3_sessions(server: ServerThread) -> list[Pop3Session]:
    assert server.server is not None
    return [s for s in server.server.listeners.sessions.values() if isinstance(s, Pop3Session)]


async def _until_blocked(server: ServerThread) -> Pop3Session:
    async with asyncio.timeout(60):
        while True:  # the condition: the session waits for the client to take its bytes
            blocked = [s for s in _pop3_sessions(server) if s.channel.must_drain]
            if blocked:
                return blocked[0]
            await asyncio.sleep(0.01)


def test_a_client_that_does_not_read_cannot_grow_memory(live: ServerThread) -> None:
    client = RawClient(live.address("pop3s"), tls_on_connect=True, timeout=60)
    client.read_line()
    client.send(f"USER {ALICE}\r\nPASS {ALICE_PASSWORD}\r\n".encode() + b"RETR 1\r\n" * 40 + b"QUIT\r\n")
    session = live.run(_until_blocked(live))
    held = live.run(_held(session))
    assert held < 1024 * 1024  # 40 RETRs of 1.5 MB are 60 MB; the server holds about one chunk
    received, tail = 0, b""
    while not tail.endswith(b"\r\n+OK Logging out.\r\n"):
        chunk = client.sock.recv(1 << 20)
        assert chunk, "closed before the end"
        received += len(chunk)
        tail = (tail + chunk)[-64:]
    assert received > 40 * BIG
    client.close()


async def _held(session: Pop3Session) -> int:
    return session.channel.write_buffer_size() + len(session.conn._buffer)


def test_login_timeout_closes_a_silent_client(live: ServerThread) -> None:
    client = RawClient(live.address("pop3s"), tls_on_connect=True, timeout=60)
    assert client.read_line() == b"+OK hardmail ready."
    assert client.read_line() == b"-ERR Disconnected for inactivity."
    assert client.closed_by_server()


def test_connections_per_address(live: ServerThread) -> None:
    opened = [RawClient(live.address("pop3s"), tls_on_connect=True) for _ in range(3)]
    assert all(c.read_line() == b"+OK hardmail ready." for c in opened)
    extra = RawClient(live.address("pop3"))
    assert extra.read_line() == b"-ERR [SYS/TEMP] Too many connections from your address."
    assert extra.closed_by_server()
    for client in opened:
        client.close()


def test_long_line_is_refused_and_the_session_goes_on(live: ServerThread) -> None:
    client = pop3s_login(live)
    with pytest.raises(poplib.error_proto, match="Input line too long"):
        client._shortcmd("NOOP " + "x" * 9000)
    assert client.noop() == b"+OK"
    client.quit()


def test_server_stop_closes_an_idle_session_and_deletes_nothing(tmp_path: Path) -> None:
    with pop3_server(tmp_path / "data", messages=2) as live:
        client = pop3s_login(live)
        client.dele(1)
        assert live.server is not None
        live.run(live.server.listeners.stop())
        assert client.sock.recv(1024).startswith(b"-ERR [SYS/TEMP] Server shutting down.")
        client.sock.close()
        inbox = live.server.context.acceptor.maildir.mailbox_path(ALICE)
        assert len([*inbox.glob("cur/*"), *inbox.glob("new/*")]) == 2


def test_a_dropped_tls_connection_mid_retr_changes_nothing(live: ServerThread) -> None:
    client = pop3s_login(live)
    client.dele(1)
    client.sock.send(b"RETR 1\r\n")
    client.sock.shutdown(socket.SHUT_RDWR)
    client.sock.close()
    again = pop3s_login(live)
    assert again.stat()[0] == 1
    again.quit()
