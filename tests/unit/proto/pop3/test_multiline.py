"""Multi-line message encoding: byte-stuffing, CRLF line ends, TOP, sizes (RFC 1939 3, 7)."""

from __future__ import annotations

import pytest

from hardmail.proto.pop3.maildrop import dovecot_uidl
from hardmail.proto.pop3.multiline import MessageEncoder, crlf_size, encode_message
from hardmail.proto.pop3.replies import err, ok

MESSAGE = b"Subject: x\r\nFrom: a@b\r\n\r\n.line one\r\nline two\r\n..three\r\n.\r\nlast"


def chunked(data: bytes, size: int, top: int | None = None) -> bytes:
    encoder = MessageEncoder(top)
    out = b"".join(encoder.feed(data[i:i + size]) for i in range(0, len(data), size))
    return out + encoder.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_stuffing_and_terminator_at_any_chunking(size: int) -> None:
    assert chunked(MESSAGE, size) == (b"Subject: x\r\nFrom: a@b\r\n\r\n..line one\r\nline two\r\n...three\r\n"
                                      b"..\r\nlast\r\n.\r\n")


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_bare_lf_becomes_crlf_and_bare_cr_stays(size: int) -> None:
    data = b"A: 1\n\n.x\r\ny\rz\n"
    assert chunked(data, size) == b"A: 1\r\n\r\n..x\r\ny\rz\r\n.\r\n"
    assert crlf_size([data[i:i + size] for i in range(0, len(data), size)]) == len(b"A: 1\r\n\r\n.x\r\ny\rz\r\n")


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_top(size: int) -> None:
    assert chunked(MESSAGE, size, top=0) == b"Subject: x\r\nFrom: a@b\r\n\r\n.\r\n"
    assert chunked(MESSAGE, size, top=2) == b"Subject: x\r\nFrom: a@b\r\n\r\n..line one\r\nline two\r\n.\r\n"
    assert chunked(MESSAGE, size, top=99) == chunked(MESSAGE, size)
    assert chunked(b"Only: header\r\n", size, top=5) == b"Only: header\r\n.\r\n"
    assert chunked(b"A: b\n\nx\ny\n", size, top=1) == b"A: b\r\n\r\nx\r\n.\r\n"


def test_octets_count_excludes_stuffing() -> None:
    encoder = MessageEncoder()
    encoder.feed(MESSAGE)
    assert encoder.octets == len(MESSAGE) == crlf_size([MESSAGE])


def test_empty_message() -> None:
    assert encode_message(b"") == b".\r\n"


def test_small_multiline_replies_are_stuffed() -> None:
    assert ok("x", (".a", "b")).to_bytes() == b"+OK x\r\n..a\r\nb\r\n.\r\n"
    assert err("bad\r\nline", "SYS/TEMP").to_bytes() == b"-ERR [SYS/TEMP] bad  line\r\n"


def test_dovecot_uidl_format() -> None:
    assert dovecot_uidl(1, 0x5F3A) == "0000000100005F3A"
