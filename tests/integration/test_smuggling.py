"""SMTP smuggling (CVE-2023-51764 class): only <CRLF>.<CRLF> ends DATA; bare CR/LF refuses the message."""

from __future__ import annotations

import pytest

from support.live import BOB, RawClient, ServerThread

TRICKS = {
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "lf-dot-lf": b"\n.\n",
    "cr-dot-crlf": b"\r.\r\n",
    "bare-lf-in-line": b"a bare\nline feed",
}


@pytest.mark.parametrize("trick", list(TRICKS.values()), ids=list(TRICKS))
def test_fake_end_of_data_is_refused(live_server: ServerThread, trick: bytes) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@elsewhere.example>")
    client.command(f"RCPT TO:<{BOB}>")
    assert client.command("DATA")[0] == 354
    smuggled = b"MAIL FROM:<evil@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSmuggled\r\n"
    client.send(b"Subject: innocent\r\n\r\nbody" + trick + smuggled + b"\r\n.\r\n")
    code, lines = client.read_reply()
    assert code == 554 and lines[0].startswith("5.6.11")
    # The smuggled commands were data: the session is back in command state, nothing queued.
    assert client.command("NOOP")[0] == 250
    assert live_server.all_mail_files() == []
    client.close()


def test_proper_message_after_refused_one_is_accepted(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    for body, expected in ((b"bad\nline", 554), (b"good line", 250)):
        client.command("MAIL FROM:<a@elsewhere.example>")
        client.command(f"RCPT TO:<{BOB}>")
        client.command("DATA")
        client.send(b"Subject: s\r\n\r\n" + body + b"\r\n.\r\n")
        assert client.read_reply()[0] == expected
    assert len(live_server.messages(BOB)) == 1
    client.close()
