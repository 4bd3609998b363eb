"""Streaming encoder of a message as a POP3 multi-line response (RETR, TOP) and its octet count.

RFC 1939 3: every line of a multi-line response ends with CRLF, a line that begins with "." gets
another "." in front (byte-stuffing), and ".CRLF" ends the response. Messages are stored with
CRLF line ends (SMTP content); a bare LF in a file put in the Maildir by other means is sent as
CRLF, as Dovecot does, and a bare CR is sent as it is. A message that does not end with a line end
gets one before the terminator. :func:`crlf_size` gives the octets RETR sends without the stuffing,
which is what LIST and STAT report (RFC 1939 5 "exact size", Dovecot's virtual size).

Work is linear in the message: whole chunks go through ``bytes`` methods; only TOP walks lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BARE_LF = re.compile(rb"(?<!\r)\n")
TERMINATOR = b".\r\n"


class MessageEncoder:
    """Feed the stored message in chunks; each call returns wire bytes to send at once.

    ``top_lines`` (TOP): only the header, the empty line after it and that many body lines
    (RFC 1939 7); :attr:`done` turns true once they are out, and further input is ignored."""

    def __init__(self, top_lines: int | None = None) -> None:
        self._top = top_lines
        self._at_line_start = True
        self._pending_cr = False  # the last byte fed was CR: an LF next is not bare
        self._in_header = True
        self._line_head = b""  # up to 2 first bytes of the current (incomplete) line, for TOP
        self._left = top_lines if top_lines is not None else 0
        self.done = False
        self.octets = 0  # sent so far, without the stuffing and terminator

    def feed(self, chunk: bytes) -> bytes:
        if self.done or not chunk:
            return b""
        data = self._normalise(chunk)
        if self._top is not None:
            return self._top_lines(data)
        return self._stuff(data)

    def _normalise(self, chunk: bytes) -> bytes:
        """LF → CRLF where the CR is missing, also across a chunk boundary."""
        head = b""
        if self._pending_cr and chunk[:1] == b"\n":
            head, chunk = b"\n", chunk[1:]
        self._pending_cr = chunk[-1:] == b"\r" if chunk else False
        return head + _BARE_LF.sub(b"\r\n", chunk) if b"\n" in chunk else head + chunk

    def _stuff(self, data: bytes) -> bytes:
        if not data:
            return b""
        self.octets += len(data)
        out = data.replace(b"\n.", b"\n..")
        if self._at_line_start and out[:1] == b".":
            out = b"." + out
        self._at_line_start = data[-1:] == b"\n"
        return out

    def _top_lines(self, data: bytes) -> bytes:
        out = []
        start = 0
        while start < len(data) and not self.done:
            end = data.find(b"\n", start)
            segment = data[start:] if end < 0 else data[start:end + 1]
            start += len(segment)
            out.append(self._stuff(segment))
            if end < 0:
                self._line_head = (self._line_head + segment)[:2]
                break
            self._line_done((self._line_head + segment)[:3])
            self._line_head = b""
        return b"".join(out)

    def _line_done(self, head: bytes) -> None:
        if self._in_header:
            if head in (b"\r\n", b"\n"):  # the empty line that ends the header (RFC 5322 2.1)
                self._in_header = False
                self.done = self._left == 0
            return
        self._left -= 1
        self.done = self._left <= 0

    def finish(self) -> bytes:
        """The end of the response: a CRLF when the last line lacked one, then ".CRLF"."""
        tail = b"" if self._at_line_start else b"\r\n"
        self._at_line_start = True
        self.done = True
        return tail + TERMINATOR


def encode_message(message: bytes, top_lines: int | None = None) -> bytes:
    """The whole multi-line body of ``message`` (tests, small messages)."""
    encoder = MessageEncoder(top_lines)
    return encoder.feed(message) + encoder.finish()


class CrlfCounter:
    """The size of a message once every bare LF is a CRLF, fed in chunks."""

    def __init__(self) -> None:
        self.size = 0
        self._pending_cr = False

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        bare = chunk.count(b"\n") - chunk.count(b"\r\n")
        if self._pending_cr and chunk[:1] == b"\n":
            bare -= 1
        self.size += len(chunk) + bare
        self._pending_cr = chunk[-1:] == b"\r"


def crlf_size(chunks: Iterable[bytes]) -> int:
    counter = CrlfCounter()
    for chunk in chunks:
        counter.feed(chunk)
    return counter.size
