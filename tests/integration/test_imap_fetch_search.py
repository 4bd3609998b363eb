"""FETCH of real MIME over the wire (BODYSTRUCTURE, ENVELOPE, sections, partials, BINARY),
SEARCH with UTF-8 text, ESEARCH and SAVE, SORT, THREAD, and CONDSTORE/QRESYNC, with raw lines
so the exact responses are checked."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from support.imap import RawImap, raw
from support.live import ServerThread, running_server, server_config

MIXED = (
    b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: =?utf-8?b?" + base64.b64encode("Réunion à Zürich".encode()) + b"?=\r\n"
    b"Date: Tue, 01 Dec 2026 09:00:00 +0100\r\n"
    b"Message-ID: <root@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Caf=C3=A9 cr=C3=A8me, see the attachment.\r\n"
    b"--b1\r\n"
    b'Content-Type: application/octet-stream; name="data.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="data.bin"\r\n'
    b"\r\n"
    + base64.b64encode(bytes(range(256))) + b"\r\n"
    b"--b1--\r\n"
)
REPLY = (b"From: alice@example.test\r\nTo: renee@example.test\r\nSubject: Re: =?utf-8?b?"
         + base64.b64encode("Réunion à Zürich".encode()) + b"?=\r\n"
         b"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <reply@example.test>\r\n"
         b"In-Reply-To: <root@example.test>\r\nReferences: <root@example.test>\r\n\r\nOui.\r\n")
OTHER = (b"From: zed@example.test\r\nTo: alice@example.test\r\nSubject: Another topic\r\n"
         b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <other@example.test>\r\n\r\nHello.\r\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("imap-fetch") / "data")) as live:
        with raw(live) as client:
            client.login()
            client.command("CREATE Lab")
            for data in (MIXED, REPLY, OTHER):
                client.send(b"a APPEND Lab {%d+}\r\n" % len(data) + data + b"\r\n")
                assert b"a OK [APPENDUID" in client.until("a")[1]
        yield live


@pytest.fixture
def lab(server: ServerThread) -> Iterator[RawImap]:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")
        _, done = client.command("EXAMINE Lab")
        assert b"[READ-ONLY]" in done
        yield client


def test_bodystructure_and_envelope(lab: RawImap) -> None:
    untagged, done = lab.command("FETCH 1 (BODYSTRUCTURE ENVELOPE)")
    assert done.startswith(b"t3 OK")
    [line] = untagged
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable"' in line
    assert b'("application" "octet-stream" ("name" "data.bin") NIL NIL "base64"' in line
    assert b'("attachment" ("filename" "data.bin"))' in line
    assert b'"mixed" ("boundary" "b1")' in line
    assert b'"Tue, 01 Dec 2026 09:00:00 +0100"' in line
    assert b'"<root@example.test>"' in line
    assert b'(("=?utf-8?q?Ren=C3=A9e?=" NIL "renee" "example.test"))' in line


def test_sections_partials_and_binary(lab: RawImap) -> None:
    untagged, _ = lab.command("FETCH 1 (BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[]<0.4> BINARY.PEEK[2] BINARY.SIZE[2])")
    [line] = untagged
    assert b'BODY[1] "Caf=C3=A9 cr=C3=A8me, see the attachment."' in line
    assert b'BODY[2.MIME] {' in line and b"Content-Disposition: attachment" in line
    assert b"BODY[]<0> \"From\"" in line
    assert b"BINARY[2] ~{256}\r\n" + bytes(range(256)) in line
    assert b"BINARY.SIZE[2] 256" in line
    untagged, done = lab.command("FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)] BODY.PEEK[9])")
    assert b"BODY[HEADER.FIELDS (MESSAGE-ID)] {35}\r\nMessage-ID: <root@example.test>\r\n\r\n" in untagged[0]
    assert done.startswith(b"t4 OK")


def test_search_text_in_utf8_and_charsets(lab: RawImap) -> None:
    untagged, _ = lab.command(b"SEARCH CHARSET UTF-8 BODY {6+}\r\ncr\xc3\xa8me")
    assert untagged == [b"* SEARCH 1\r\n"]
    untagged, _ = lab.command(b"SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nz\xc3\xbcrich")
    assert untagged == [b"* SEARCH 1 2\r\n"]
    untagged, _ = lab.command("SEARCH FROM zed SINCE 1-Jan-2020")
    assert untagged == [b"* SEARCH 3\r\n"]
    _, done = lab.command("SEARCH CHARSET KOI8-R TEXT x")
    assert done.startswith(b"t6 NO [BADCHARSET (UTF-8 US-ASCII)]")
    untagged, done = lab.command("SEARCH RETURN (MIN MAX COUNT) HEADER Message-ID example")
    assert untagged == [b'* ESEARCH (TAG "t7") MIN 1 MAX 3 COUNT 3\r\n']
    lab.command("UID SEARCH RETURN (SAVE) SUBJECT topic")
    untagged, _ = lab.command("FETCH $ (UID)")
    assert len(untagged) == 1 and untagged[0].startswith(b"* 3 FETCH")


def test_sort_and_thread(lab: RawImap) -> None:
    untagged, _ = lab.command("SORT (DATE) UTF-8 ALL")
    assert untagged == [b"* SORT 3 1 2\r\n"]
    untagged, _ = lab.command("SORT (REVERSE SUBJECT) UTF-8 ALL")
    assert untagged == [b"* SORT 1 2 3\r\n"]
    untagged, _ = lab.command("THREAD REFERENCES UTF-8 ALL")
    assert untagged == [b"* THREAD (3)(1 2)\r\n"]
    untagged, _ = lab.command("THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert untagged == [b"* THREAD (3)(1 2)\r\n"]


def _code_number(lines: list[bytes], code: bytes) -> int:
    line = next(line for line in lines if b"[" + code + b" " in line)
    return int(line.split(code + b" ")[1].split(b"]")[0])


def test_condstore_and_qresync(server: ServerThread) -> None:
    with raw(server) as client:
        client.login()
        client.command("ENABLE QRESYNC")
        untagged, done = client.command("SELECT Lab")
        assert done.startswith(b"t3 OK [READ-WRITE]")
        uidvalidity = _code_number(untagged, b"UIDVALIDITY")
        modseq = _code_number(untagged, b"HIGHESTMODSEQ")
        untagged, done = client.command(f"UID STORE 1:3 (UNCHANGEDSINCE {modseq}) +FLAGS.SILENT (\\Seen)")
        assert done.startswith(b"t4 OK")
        untagged, done = client.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq})")
        assert len(untagged) == 3 and all(b"MODSEQ (" in line for line in untagged)
        _, done = client.command(f"UID STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
        assert done.startswith(b"t6 OK [MODIFIED 1]")
        client.command("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        client.command("UID EXPUNGE 3")
        client.command("UNSELECT")
        untagged, done = client.command(f"SELECT Lab (QRESYNC ({uidvalidity} {modseq}))")
        assert b"* VANISHED (EARLIER) 3\r\n" in untagged
        assert any(b"FETCH (UID 1 " in line for line in untagged)
        assert done.startswith(b"t10 OK [READ-WRITE]")
        untagged, done = client.command("SELECT INBOX")
        assert untagged[0] == b"* OK [CLOSED] Previous mailbox closed\r\n"
