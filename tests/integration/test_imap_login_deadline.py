"""The login timeout over real sockets also holds for a client that never reads its responses:
the session waiting for it to take them is closed at the login deadline, not after the much
longer write timeout."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.server.imap_session import WRITE_TIMEOUT, ImapSession
from support.live import ServerThread, running_server, server_config

LOGIN_TIMEOUT = 1.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    limits = {"login_timeout": LOGIN_TIMEOUT, "commands_per_second": 100_000}
    with running_server(server_config(tmp_path / "data", imap=limits)) as live:
        yield live


def _imap_sessions(server: ServerThread) -> list[ImapSession]:
    assert server.server is not None
    return [s for s in server.server.listeners.sessions.values() if isinstance(s, ImapSession)]


async def _until_gone(server: ServerThread, session: ImapSession, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            while session in _imap_sessions(server):
                await asyncio.sleep(0.05)
    except TimeoutError:
        return False
    return True


def test_a_client_that_never_reads_is_closed_at_the_login_deadline(server: ServerThread) -> None:
    before = set(map(id, _imap_sessions(server)))
    sock = socket.create_connection(server.address("imap"), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.recv(4096)  # greeting
        sock.setblocking(False)
        flood = b"c CAPABILITY\r\n" * 1000
        for _ in range(10_000):  # the server stops taking commands once we hold its answers
            try:
                sock.send(flood)
            except BlockingIOError:
                if not select.select([], [sock], [], 5.0)[1]:  # stalled
                    break
            except ConnectionResetError:  # the server already cut us off
                break
        sessions = [s for s in _imap_sessions(server) if id(s) not in before]
        # well before WRITE_TIMEOUT: the login deadline holds while the server waits to write
        assert not sessions or server.run(_until_gone(server, sessions[0], WRITE_TIMEOUT / 5))
    finally:
        sock.close()
