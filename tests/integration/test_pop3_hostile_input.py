"""POP3 replies to hostile input over real sockets: what the server echoes back from a command
line (an invalid message number, a number of lines) carries no control character."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
