"""Command streams recorded from real clients (imaplib, imapclient, aioimaplib) parse without a
single BAD, whole and byte by byte (see data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.connection import ImapServerConnection

DATA = Path(__file__).parent / "data"


def replay(stream: bytes, bytewise: bool) -> list[c.Event]:
    """Feed ``stream`` and play the session's part: confirm logins and SELECTs, enter IDLE."""
    conn = ImapServerConnection()
    events: list[c.Event] = []
    pieces = [stream[i:i + 1] for i in range(len(stream))] if bytewise else [stream]
    for piece in pieces:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not c.NEED_DATA:
            assert isinstance(event, c.Event)
            events.append(event)
            if isinstance(event, c.Login):
                conn.authenticated()
            elif isinstance(event, c.Select):
                conn.selected()
            elif isinstance(event, c.Idle):
                conn.expect_idle_done()
    return events


@pytest.mark.parametrize("name", ["imaplib", "imapclient", "aioimaplib"])
def test_real_client_streams_parse(name: str, feed_mode: str) -> None:
    stream = (DATA / f"{name}.bin").read_bytes()
    events = replay(stream, feed_mode == "bytewise")
    refused = [e for e in events if isinstance(e, c.BadCommand | c.LineTooLong | c.LiteralTooLarge)]
    assert refused == []
    commands = [e for e in events if isinstance(e, c.Command | c.IdleDone)]
    assert len(commands) == stream.count(b"\r\n") - stream.count(b"}\r\n") - _literal_lines(events)
    assert isinstance(commands[-1], c.Logout)


def _literal_lines(events: list[c.Event]) -> int:
    """CRLFs inside literal data (message bodies), which are no command ends."""
    return sum(e.message.count(b"\r\n") for e in events if isinstance(e, c.Append))


def test_imapclient_details() -> None:
    events = replay((DATA / "imapclient.bin").read_bytes(), bytewise=False)
    creates = [e for e in events if isinstance(e, c.Create)]
    assert creates == [c.Create(creates[0].tag, "Été")]
    searches = [e for e in events if isinstance(e, c.Search)]
    assert any(e.charset == "UTF-8" and "café" in repr(e.key) for e in searches)
    fetch = [e for e in events if isinstance(e, c.Fetch) and e.changedsince]
    assert fetch and fetch[0].changedsince == 1 and fetch[0].uid
