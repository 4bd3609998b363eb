"""Seeded random input (valid commands mixed with garbage) never breaks the SMTP core: no exception,
every reply is well formed, and the pump always stops."""

from __future__ import annotations

import random
import re

from hardmail.core.replies import AUTH_OK, Reply
from hardmail.proto.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Event,
    Mail,
    MessageReceived,
    Rcpt,
    StartTls,
)
from hardmail.proto.smtp.state import ServerConnection, SmtpOptions

CASES = 2000
REPLY_LINE = re.compile(rb"^\d{3}[ -]")

COMMANDS = [
    b"EHLO client.example.net", b"HELO x", b"EHLO", b"MAIL FROM:<a@example.net>", b"MAIL FROM:<>",
    b"MAIL FROM:<a@example.net> SIZE=100 BODY=8BITMIME", b"MAIL FROM:<j\xc3\xb6rg@b\xc3\xbccher.example> SMTPUTF8",
    b"MAIL FROM:<a@example.net> ENVID=x+2By RET=HDRS AUTH=<>", b"MAIL FROM:<a@example.net> SIZE=\xc2\xb2",
    b"RCPT TO:<b@example.org>", b"RCPT TO:<Postmaster>", b"RCPT TO:<b@example.org> NOTIFY=SUCCESS,DELAY",
    b"RCPT TO:<b@example.org> ORCPT=rfc822;b@example.org", b"RCPT TO:<@r.example:b@example.org>",
    b"DATA", b"BDAT 5", b"BDAT 0 LAST", b"BDAT 3 LAST", b"BDAT 99999999999999999999", b"RSET", b"NOOP",
    b"QUIT", b"HELP", b"VRFY x", b"EXPN x", b"STARTTLS", b"AUTH PLAIN", b"AUTH PLAIN AGEAYg==", b"AUTH LOGIN",
    b"AUTH CRAM-MD5", b"*", b"=", b"dXNlcg==", b".", b"..", b"", b"MAIL FROM:<\"q>\"@example.net>",
    b"MAIL FROM:<a@[IPv6:::1]>", b"RCPT TO:<a@[999.1.1.1]>", b"MAIL FROM:<a@xn--zz.example>",
]
GARBAGE = [b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n", b"\x00", b"\xff\xfe", b" ", b"<", b">", b":",
           b"\r\n.", b"A" * 1100, b"B" * 13000, b"\xe2\x82", b"=", b"+", b"@"]


def random_body(rng: random.Random) -> bytes:
    lines = [rng.choice([b"Subject: x", b"", b".", b"..", b".x", b"text", b"a\nb", b"c\rd", b"\xc3\xa9"])
             for _ in range(rng.randint(0, 8))]
    return b"\r\n".join(lines) + rng.choice([b"\r\n.\r\n", b"\r\n.\r\n", b"\n.\r\n", b"\r\n.\n", b""])


def random_transaction(rng: random.Random) -> bytes:
    parts = [b"EHLO c.example.net\r\n"]
    if rng.random() < 0.3:
        parts.append(rng.choice([b"AUTH PLAIN\r\nAGEAYg==\r\n", b"AUTH LOGIN\r\ndXNlcg==\r\ncHc=\r\n",
                                 b"AUTH PLAIN\r\n*\r\n", b"AUTH LOGIN =\r\n!!\r\n"]))
    parts.append(rng.choice(COMMANDS[3:9]) + b"\r\n")
    parts += [rng.choice(COMMANDS[9:14]) + b"\r\n" for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.5:
        parts.append(b"DATA\r\n" + random_body(rng))
    else:
        for last in [False] * rng.randint(0, 2) + [rng.random() < 0.8]:
            chunk = random_body(rng)
            parts.append(b"BDAT %d%s\r\n%s" % (len(chunk), b" LAST" if last else b"", chunk))
    return b"".join(parts)


def random_input(rng: random.Random) -> bytes:
    parts: list[bytes] = []
    for _ in range(rng.randint(1, 12)):
        roll = rng.random()
        if roll < 0.3:
            parts.append(random_transaction(rng))
        elif roll < 0.8:
            parts.append(rng.choice(COMMANDS) + rng.choice([b"\r\n", b"\r\n", b"\r\n", b"\n", b""]))
        elif roll < 0.9:
            parts.append(rng.choice(GARBAGE))
        else:
            parts.append(bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))))
    return b"".join(parts)


def random_answer(rng: random.Random, event: Event) -> Reply:
    if isinstance(event, (Auth, AuthResponse)) and rng.random() < 0.3:
        return AUTH_OK
    if isinstance(event, (Mail, Rcpt, MessageReceived)) and rng.random() < 0.2:
        return Reply(550, "5.7.1", "refused by policy")
    if rng.random() < 0.01:
        return Reply(421, "4.3.2", "going away")
    return event.reply


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    out, index = [], 0
    while index < len(data):
        size = rng.choice([1, 1, 2, 3, 7, 64, 4096])
        out.append(data[index:index + size])
        index += size
    return out


def check_message(event: MessageReceived) -> None:
    content = b"".join(event.chunks)
    assert event.size == len(content)
    if not event.via_bdat:  # RFC 5321 2.3.8: DATA content has CRLF line ends only
        assert content.count(b"\n") == content.count(b"\r") == content.count(b"\r\n")
        assert content == b"" or content.endswith(b"\r\n")


def run_case(rng: random.Random, data: bytes) -> None:
    options = SmtpOptions(hostname="mx.example.org", max_message_size=rng.choice([20, 5000]),
                          max_recipients=3, max_commands=rng.choice([5, 500]), max_bad_commands=rng.choice([3, 500]),
                          tls_active=rng.random() < 0.5, auth_mechanisms=rng.choice([(), ("PLAIN", "LOGIN")]),
                          auth_requires_tls=rng.random() < 0.8)
    conn = ServerConnection(options)
    assert REPLY_LINE.match(conn.greeting())
    budget = len(data) + 10  # every event consumes input, so this bounds the pump
    for piece in pieces(rng, data):
        if conn.closed:
            break
        conn.receive_data(piece)
        while not conn.closed:
            event = conn.next_event()
            if event is NEED_DATA:
                if conn.awaiting_tls:
                    conn.start_tls()
                    continue
                break
            assert isinstance(event, Event)
            budget -= 1
            assert budget > 0, "the pump does not terminate"
            if isinstance(event, MessageReceived):
                check_message(event)
            wire = conn.send(random_answer(rng, event))
            assert wire.endswith(b"\r\n")
            for line in wire.split(b"\r\n")[:-1]:
                assert REPLY_LINE.match(line), (data, wire)
            if isinstance(event, StartTls):
                assert conn.awaiting_tls == (wire[:3] == b"220")


def test_random_input_never_breaks_the_core():
    rng = random.Random(20240611)
    for case in range(CASES):
        data = random_input(rng)
        try:
            run_case(rng, data)
        except AssertionError:
            raise
        except Exception as exc:  # report the input that broke it
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc} for input {data[:300]!r}") from exc
