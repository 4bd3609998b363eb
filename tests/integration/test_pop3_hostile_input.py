"""POP3 replies to hostile input over real sockets: what the server echoes back from a command
line (an invalid message number, a number of lines) carries no control character; the login
timeout also ends a client that never reads its answers."""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.server.pop3_session import Pop3Session
from support.live import ALICE, ALICE_PASSWORD, RawClient, ServerThread
from support.pop3 import pop3_server


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerThread]:
    with pop3_server(tmp_path / "data", messages=1) as server:
        yield server


def test_echoed_arguments_carry_no_control_characters(live: ServerThread) -> None:
    client = RawClient(live.address("pop3s"), tls_on_connect=True)
    assert client.read_line().startswith(b"+OK")
    client.send(f"USER {ALICE}\r\nPASS {ALICE_PASSWORD}\r\n".encode())
    assert client.read_line().startswith(b"+OK")
    assert client.read_line().startswith(b"+OK")
    for line in (b"LIST 1\x1b[2J\x1b]0;owned\x07", b"RETR \x081\x7f", b"TOP 1 9\x1b[31m", b"DELE \xc2\x9b1"):
        client.send(line + b"\r\n")
        reply = client.read_line()
        assert reply.startswith(b"-ERR "), reply
        text = reply.decode("utf-8")
        assert not any(ord(char) < 32 or 127 <= ord(char) < 160 for char in text), reply
    client.close()


@pytest.fixture
def quick_login(tmp_path: Path) -> Iterator[ServerThread]:
    with pop3_server(tmp_path / "data", pop3={"login_timeout": 1.0, "commands_per_second": 0}) as server:
        yield server


def _pop3_sessions(server: ServerThread) -> list[Pop3Session]:
    assert server.server is not None
    return [s for s in server.server.listeners.sessions.values() if isinstance(s, Pop3Session)]


async def _until_gone(server: ServerThread, session: Pop3Session, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            while session in _pop3_sessions(server):
                await asyncio.sleep(0.05)
    except TimeoutError:
        return False
    return True


def test_a_client_that_never_reads_is_closed_at_the_login_deadline(quick_login: ServerThread) -> None:
    before = set(map(id, _pop3_sessions(quick_login)))
    sock = socket.create_connection(quick_login.address("pop3"), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.recv(4096)  # greeting
        sock.setblocking(False)
        flood = b"CAPA\r\n" * 1000
        for _ in range(10_000):  # the server stops taking commands once we hold its answers
            try:
                sock.send(flood)
            except BlockingIOError:
                if not select.select([], [sock], [], 5.0)[1]:  # stalled
                    break
            except ConnectionResetError:  # the server already cut us off
                break
        sessions = [s for s in _pop3_sessions(quick_login) if id(s) not in before]
        # well before idle_timeout (600 s): the login deadline holds while the server waits to write
        assert not sessions or quick_login.run(_until_gone(quick_login, sessions[0], 60.0))
    finally:
        sock.close()
