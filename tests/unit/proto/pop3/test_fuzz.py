"""Seeded random input (valid commands mixed with garbage) never breaks the POP3 core: no
exception, every response is well formed (status lines start with +OK, -ERR or "+ "; multi-line
bodies end with "."), the buffer stays bounded, and the pump always stops."""

from __future__ import annotations

import random

from hardmail.proto.pop3.connection import Pop3Options, Pop3ServerConnection
from hardmail.proto.pop3.events import NEED_DATA, Auth, AuthResponse, Event, Pass, Stls
from hardmail.proto.pop3.maildrop import Maildrop
from hardmail.proto.pop3.replies import AUTH_FAILED, continuation, ok

from .conftest import MESSAGES

CASES = 600
COMMANDS = [
    b"CAPA", b"USER alice", b"USER", b"PASS secret", b"PASS", b"AUTH", b"AUTH PLAIN", b"AUTH PLAIN AGEAYg==",
    b"AUTH SCRAM-SHA-256", b"AUTH X", b"AUTH PLAIN a b", b"*", b"=", b"STLS", b"STAT", b"STAT 1", b"LIST",
    b"LIST 1", b"LIST 0", b"LIST 99999999999999999999", b"UIDL", b"UIDL 2", b"UIDL \xc2\xb2", b"TOP 1 0",
    b"TOP 1", b"TOP 1 -1", b"TOP 3 99999999999", b"RETR 1", b"RETR", b"RETR \xd9\xa3", b"DELE 1", b"DELE 2",
    b"DELE", b"RSET", b"NOOP", b"QUIT", b"APOP a b", b"", b".", b"retr 2", b"list   1",
]
GARBAGE = [b"\r", b"\n", b"\r\n", b"\x00", b"\xff\xfe", b" ", b"A" * 9000, b"B" * 13000, b"\xe2\x82", b"+"]


def _answer(conn: Pop3ServerConnection, event: Event, rng: random.Random) -> bytes:
    reply = AUTH_FAILED if isinstance(event, Pass) else event.reply  # a login needs the session's decision
    if isinstance(event, (Pass, Auth, AuthResponse)) and rng.random() < 0.5:
        if isinstance(event, Auth) and rng.random() < 0.5:
            reply = continuation("")
        else:
            conn.maildrop = Maildrop(MESSAGES)
            reply = ok("Logged in.")
    wire = conn.send(reply)
    if isinstance(event, Stls) and reply.ok:
        conn.start_tls()
    return wire


def _check(wire: bytes) -> None:
    lines = wire.split(b"\r\n")
    assert lines[-1] == b""
    in_body = False
    for line in lines[:-1]:
        if in_body:
            in_body = line != b"."
            continue
        assert line.startswith((b"+OK", b"-ERR", b"+ ")), wire[:200]
        in_body = False


def test_random_input_never_breaks_the_core() -> None:
    rng = random.Random(1939)
    for _ in range(CASES):
        conn = Pop3ServerConnection(Pop3Options(tls_active=rng.random() < 0.7, max_line=rng.choice([64, 8192])))
        stream = b"".join(rng.choice(COMMANDS) + b"\r\n" if rng.random() < 0.8 else rng.choice(GARBAGE)
                          for _ in range(rng.randint(1, 30)))
        size = rng.choice([1, 3, 17, len(stream)])
        for start in range(0, len(stream), size):
            if conn.closed:
                break
            conn.receive_data(stream[start:start + size])
            for _ in range(200):
                event = conn.next_event()
                if event is NEED_DATA:
                    break
                assert isinstance(event, Event)
                wire = _answer(conn, event, rng)
                if event.reply.lines is None:  # multi-line ones are checked in test_connection
                    _check(wire.split(b"\r\n", 1)[0] + b"\r\n")
            else:
                raise AssertionError("the pump did not stop")
            assert len(conn._buffer) <= 13000 + 64 + size
