"""Helpers for the IMAP core tests: feed bytes whole or one byte at a time and collect events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hardmail.proto.imap.commands import NEED_DATA, Event
from hardmail.proto.imap.connection import ImapServerConnection
from hardmail.proto.imap.state import ConnState, ImapOptions


@dataclass
class Feeder:
    conn: ImapServerConnection
    bytewise: bool
    events: list[Event] = field(default_factory=list)
    max_buffered: int = 0

    def feed(self, data: bytes) -> list[Event]:
        start = len(self.events)
        pieces = [data[i:i + 1] for i in range(len(data))] if self.bytewise else [data]
        for piece in pieces:
            self.conn.receive_data(piece)
            self.max_buffered = max(self.max_buffered, self.conn.buffered)
            self.pump()
        return self.events[start:]

    def pump(self) -> None:
        while (event := self.conn.next_event()) is not NEED_DATA:
            assert isinstance(event, Event)
            self.events.append(event)


def make_conn(state: ConnState = ConnState.NOT_AUTHENTICATED, enabled: tuple[str, ...] = (),
              **options: Any) -> ImapServerConnection:
    conn = ImapServerConnection(ImapOptions(**options))
    conn.state = state
    conn.enable(*enabled)
    return conn


@pytest.fixture
def feeder(feed_mode: str) -> Callable[..., Feeder]:
    """``feeder(state=..., enabled=(...), **ImapOptions)`` → a Feeder in the given state."""

    def make(state: ConnState = ConnState.NOT_AUTHENTICATED, enabled: tuple[str, ...] = (),
             **options: Any) -> Feeder:
        return Feeder(make_conn(state, enabled, **options), bytewise=feed_mode == "bytewise")

    return make


def parse_one(line: bytes, state: ConnState = ConnState.SELECTED, enabled: tuple[str, ...] = (),
              **options: Any) -> Event:
    """Parse one complete command (literals included, no continuation wanted) both whole and byte
    by byte; both ways must give the same single event (ContinuationNeeded events dropped)."""
    results = []
    for bytewise in (False, True):
        f = Feeder(make_conn(state, enabled, **options), bytewise)
        events = [e for e in f.feed(line) if type(e).__name__ != "ContinuationNeeded"]
        assert len(events) == 1, events
        results.append(events[0])
    assert results[0] == results[1]
    return results[0]
