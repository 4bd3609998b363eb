"""A driver for the sans-IO POP3 core: feeds bytes whole or one byte at a time, answers events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hardmail.proto.pop3.connection import Pop3Options, Pop3ServerConnection
from hardmail.proto.pop3.events import NEED_DATA, Event
from hardmail.proto.pop3.maildrop import DropMessage, Maildrop, dovecot_uidl
from hardmail.proto.pop3.replies import Pop3Reply

Answer = Callable[[Event], Pop3Reply | None]
MESSAGES = (DropMessage(3, 120, dovecot_uidl(3, 77)), DropMessage(5, 80, dovecot_uidl(5, 77)),
            DropMessage(9, 1000, dovecot_uidl(9, 77)))


@dataclass
class Driver:
    conn: Pop3ServerConnection
    bytewise: bool
    answer: Answer | None = None
    events: list[Event] = field(default_factory=list)
    wire: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> bytes:
        start = len(self.wire)
        pieces = [data[i:i + 1] for i in range(len(data))] if self.bytewise else [data]
        for piece in pieces:
            if self.conn.closed:
                break
            self.conn.receive_data(piece)
            self.pump()
        return bytes(self.wire[start:])

    def pump(self) -> None:
        while not self.conn.closed:
            event = self.conn.next_event()
            if event is NEED_DATA:
                return
            assert isinstance(event, Event)
            self.events.append(event)
            reply = (self.answer(event) if self.answer else None) or event.reply
            if reply.ok and type(event).__name__ in ("Pass", "AuthResponse", "Auth"):
                self.conn.maildrop = Maildrop(MESSAGES)
            self.wire += self.conn.send(reply)

    def lines(self, data: bytes) -> list[str]:
        return self.feed(data).decode().split("\r\n")[:-1]


@pytest.fixture(params=["whole", "bytewise"])
def pop3(request: pytest.FixtureRequest) -> Callable[..., Driver]:
    def make(answer: Answer | None = None, **options: Any) -> Driver:
        options.setdefault("tls_active", True)
        return Driver(Pop3ServerConnection(Pop3Options(**options)), request.param == "bytewise", answer)

    return make


@pytest.fixture
def logged_in(pop3: Callable[..., Driver]) -> Driver:
    driver = pop3()
    assert driver.lines(b"USER alice\r\nPASS secret word\r\n") == ["+OK", "+OK Logged in."]
    return driver
