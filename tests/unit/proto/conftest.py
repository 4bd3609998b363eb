"""Shared helpers for the sans-IO protocol tests: a driver that feeds bytes to a ServerConnection and
answers every event, run once with the whole input in one feed and once one byte at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hardmail.core.replies import Reply
from hardmail.proto.smtp.events import NEED_DATA, Event, ProtocolError
from hardmail.proto.smtp.state import ServerConnection, SmtpOptions

Answer = Callable[[Event], Reply | None]
REPLY_LINE = re.compile(rb"^\d{3}[ -]")
HOSTNAME = "mx.example.org"


@dataclass
class Exchange:
    """One event and the wire bytes sent in answer."""

    event: Event
    reply: Reply
    wire: bytes


@dataclass
class Driver:
    """Feeds bytes, pumps events, answers each with its proposed reply unless ``answer`` overrides."""

    conn: ServerConnection
    bytewise: bool
    answer: Answer | None = None
    greeting: bytes = b""
    log: list[Exchange] = field(default_factory=list)

    def feed(self, data: bytes) -> list[Exchange]:
        """Feed ``data`` (whole or byte by byte) and return the exchanges it caused."""
        start = len(self.log)
        pieces = [data[i:i + 1] for i in range(len(data))] if self.bytewise else [data]
        for piece in pieces:
            if self.conn.closed:
                break
            self.conn.receive_data(piece)
            self.pump()
        return self.log[start:]

    def pump(self) -> None:
        while not self.conn.closed:
            event = self.conn.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            override = self.answer(event) if self.answer else None
            reply = override or event.reply
            wire = self.conn.send(reply)
            assert all(REPLY_LINE.match(line) for line in wire.split(b"\r\n")[:-1]), wire
            self.log.append(Exchange(event, reply, wire))

    # ----- conveniences ---------------------------------------------------------------------
    def ehlo(self, name: str = "client.example.net") -> Exchange:
        (exchange,) = self.feed(f"EHLO {name}\r\n".encode())
        return exchange

    def envelope(self, sender: str = "a@example.net", *recipients: str) -> None:
        """EHLO (when needed), MAIL and RCPT; asserts every step was accepted."""
        if self.conn.helo is None:
            self.ehlo()
        lines = [f"MAIL FROM:<{sender}>"] + [f"RCPT TO:<{r}>" for r in (recipients or ("b@example.org",))]
        for exchange in self.feed("".join(f"{line}\r\n" for line in lines).encode()):
            assert exchange.reply.is_positive, exchange

    @property
    def events(self) -> list[Event]:
        return [x.event for x in self.log]

    @property
    def codes(self) -> list[int]:
        return [x.reply.code for x in self.log]

    @property
    def wire(self) -> bytes:
        return b"".join(x.wire for x in self.log)

    @property
    def last(self) -> Exchange:
        return self.log[-1]

    def of_type(self, kind: type[Event]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def errors(self) -> list[ProtocolError]:
        return self.of_type(ProtocolError)


@pytest.fixture(params=["whole", "bytewise"])
def feed_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def smtp(feed_mode: str) -> Callable[..., Driver]:
    """Factory: ``smtp(answer=None, **SmtpOptions fields)`` → a greeted Driver."""

    def make(answer: Answer | None = None, **options: Any) -> Driver:
        options.setdefault("hostname", HOSTNAME)
        conn = ServerConnection(SmtpOptions(**options))
        return Driver(conn, bytewise=feed_mode == "bytewise", answer=answer, greeting=conn.greeting())

    return make


@pytest.fixture
def session(smtp: Callable[..., Driver]) -> Driver:
    """A greeted connection with default options."""
    return smtp()


@pytest.fixture
def ready(smtp: Callable[..., Driver]) -> Driver:
    """A connection after a successful EHLO."""
    driver = smtp()
    driver.ehlo()
    return driver


@pytest.fixture
def tls_auth(smtp: Callable[..., Driver]) -> Callable[..., Driver]:
    """Factory for a TLS connection offering PLAIN and LOGIN, after EHLO."""

    def make(answer: Answer | None = None, **options: Any) -> Driver:
        options.setdefault("tls_active", True)
        options.setdefault("auth_mechanisms", ("PLAIN", "LOGIN"))
        driver = smtp(answer=answer, **options)
        driver.ehlo()
        return driver

    return make
