"""Text lines over smtp.max_line_length (RFC 5321 4.5.3.1.6) over a real socket: DATA and BDAT.

The message is read to its real end, refused with 554 5.6.0 (the reply says how to fix it), its
incoming file removed, and the session goes on; a line of exactly the limit is delivered.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from support.live import BOB, RawClient, ServerThread, running_server, server_config

HEAD = b"From: someone@remote.example\r\nTo: bob@example.test\r\nSubject: long line\r\n\r\n"
FIX = "wrap lines at 998 characters or use quoted-printable/base64"


def line(total: int, fill: bytes = b"x") -> bytes:
    return fill * (total - 2) + b"\r\n"


def envelope(client: RawClient) -> None:
    assert client.command("MAIL FROM:<someone@remote.example>")[0] == 250
    assert client.command(f"RCPT TO:<{BOB}>")[0] == 250


def greeted(server: ServerThread) -> RawClient:
    client = RawClient(server.address("smtp"))
    assert client.read_reply()[0] == 220
    assert client.command("EHLO client.example.net")[0] == 250
    return client


def assert_refused(reply: tuple[int, list[str]]) -> None:
    code, lines = reply
    assert code == 554 and lines[0].startswith("5.6.0"), reply
    assert FIX in " ".join(lines)


def wait_idle(server: ServerThread) -> None:
    assert server.server is not None
    server.run(server.server.context.incoming_store().wait_idle())


@pytest.mark.parametrize("total", [1001, 300_000])
def test_data_with_a_long_line_is_refused_after_its_real_end(live_server: ServerThread, total: int) -> None:
    client = greeted(live_server)
    envelope(client)
    assert client.command("DATA")[0] == 354
    smuggled = b"\n.\r\nMAIL FROM:<evil@elsewhere.example>\r\n"  # a fake end inside: still data
    client.send(HEAD + line(total) + b"y" * 10 + smuggled + (b"z" * 78 + b"\r\n") * 2000 + b".\r\n")
    assert client.read_reply()[1][0].startswith("5.6.11")  # the bare LF wins when both are wrong
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(HEAD + line(total) + (b"z" * 78 + b"\r\n") * 2000 + b".\r\n")
    assert_refused(client.read_reply())
    assert client.command("NOOP")[0] == 250
    client.close()
    wait_idle(live_server)
    assert live_server.messages(BOB) == []


def test_a_line_of_exactly_the_limit_is_delivered(live_server: ServerThread) -> None:
    body = line(1000) + line(1000, b".") + b"end\r\n"  # the stuffed dot does not count
    client = greeted(live_server)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(HEAD + (b"\r\n" + body).replace(b"\r\n.", b"\r\n..")[2:] + b".\r\n")
    assert client.read_reply()[0] == 250
    client.close()
    (stored,) = live_server.messages(BOB)
    assert stored.endswith(HEAD + body)


def test_bdat_with_a_line_across_chunks_is_refused(live_server: ServerThread) -> None:
    client = greeted(live_server)
    envelope(client)
    first = HEAD + b"x" * 700
    client.send(b"BDAT %d\r\n" % len(first) + first)
    assert client.read_reply()[0] == 250
    second = b"x" * 700 + b"\r\n"
    client.send(b"BDAT %d LAST\r\n" % len(second) + second)
    assert_refused(client.read_reply())
    assert client.command("NOOP")[0] == 250
    client.close()
    wait_idle(live_server)
    assert live_server.messages(BOB) == []


def test_smtplib_gets_the_refusal(live_server: ServerThread) -> None:
    with smtplib.SMTP(*live_server.address("smtp"), timeout=20) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("someone@remote.example", [BOB], HEAD + line(5000))
        assert refused.value.smtp_code == 554
        assert FIX in refused.value.smtp_error.decode()


def test_a_raised_limit_takes_longer_lines(tmp_path: Path) -> None:
    with running_server(server_config(tmp_path / "data", smtp={"max_line_length": 4000})) as server:
        client = greeted(server)
        for total, code in ((4000, 250), (4001, 554)):
            envelope(client)
            assert client.command("DATA")[0] == 354
            client.send(HEAD + line(total) + b".\r\n")
            reply = client.read_reply()
            assert reply[0] == code
        assert "wrap lines at 3998 characters" in " ".join(reply[1])
        client.close()
        assert len(server.messages(BOB)) == 1
