"""Command streams recorded from real clients (imaplib, imapclient, aioimaplib, fetchmail) parse without a
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


@pytest.mark.parametrize("name", ["imaplib", "imapclient", "aioimaplib", "fetchmail"])
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


# Command shapes other clients are known to send, written by hand (no recording: these clients need
# a desktop); each must parse to a command, whole and byte by byte.
KNOWN_SHAPES = [
    b'3 ID ("name" "Thunderbird" "version" "115.3.1")',
    b'4 select "INBOX" (CONDSTORE)',
    b"5 UID fetch 1:* (FLAGS)",
    b"6 UID fetch 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
    b"Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
    b"7 UID fetch 1 (UID RFC822.SIZE BODY.PEEK[]<0.10240>)",
    b"8 UID fetch 1 (BODY.PEEK[1.MIME] BODY.PEEK[1] BODY.PEEK[2.1.HEADER])",
    b'9 list (subscribed) "" "*" return (special-use)',
    b'10 getquotaroot "INBOX"',
    b"11 UID store 1 +Flags (\\Seen)",
    b"12 uid store 1:3,7 +FLAGS.SILENT (\\Deleted $Junk)",
    b"13 UID expunge 1:3,7",
    b'14 UID MOVE 4 "Trash"',
    b"15 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)",
    b"16 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER] INTERNALDATE)",
    b"17 STATUS INBOX (MESSAGES UNSEEN RECENT UIDNEXT UIDVALIDITY)",
    b'18 LIST "" "*" RETURN (CHILDREN SPECIAL-USE)',
    b'19 ID ("name" "iPhone Mail" "version" "20A380" "os" "iOS" "os-version" "16.0 (20A380)")',
    b"20 UID SEARCH 1:* NOT DELETED",
    b"21 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
    b'22 SELECT "INBOX" (QRESYNC (1700000000 42 1:20))',
    b"23 UID SEARCH RETURN (ALL) UNSEEN",
    b'24 UID FETCH 5 (BODYSTRUCTURE BINARY.PEEK[1] BINARY.SIZE[2])',
    b'25 LIST (SPECIAL-USE) "" "*"',
    b'26 STATUS "Sent" (MESSAGES UIDNEXT UNSEEN HIGHESTMODSEQ SIZE)',
    b"27 UID SORT (REVERSE ARRIVAL) UTF-8 UNDELETED",
    b"28 UID SEARCH MODSEQ 100",
    b"29 FETCH 1:100 (UID FLAGS MODSEQ)",
]


@pytest.mark.parametrize("line", KNOWN_SHAPES, ids=[s.split(b" ")[1].decode() + "-" + s.split(b" ")[0].decode()
                                                     for s in KNOWN_SHAPES])
def test_known_client_shapes(line: bytes) -> None:
    from hardmail.proto.imap.state import ConnState

    from .conftest import parse_one

    event = parse_one(line + b"\r\n", ConnState.SELECTED, enabled=("QRESYNC",))
    assert isinstance(event, c.Command), event
