"""Message content readers: DATA with dot-transparency and strict end-of-data, and BDAT chunks.

RFC 5321 4.1.1.4: DATA ends only on <CRLF>.<CRLF>. RFC 5321 4.5.2: a leading dot on a line is
removed. RFC 5321 2.3.8: lines end in CRLF; a bare CR or LF anywhere in DATA marks the message
refused (SMTP smuggling, CVE-2023-51764 class), but the reader still runs to the real end so that
nothing after a fake end is taken as commands. Buffers are scanned with bytes.find/count rather
than line by line.

The readers keep no content themselves: each unstuffed piece goes to a :class:`ContentSink` as
soon as it is known to be content (the server's sink streams it to a file in the data directory,
so that memory per message stays bounded whatever its size); :class:`ChunkList`, the default, keeps
the pieces in memory for tools and tests. A refused message (too big, bare CR/LF) is still read to
its end, but nothing more goes to the sink and the sink is told to drop what it has.

RFC 5321 4.5.3.1.6: a text line is at most ``max_line_length`` octets including the CRLF, "not
counting the leading dot duplicated for transparency", so DATA lines are measured after unstuffing.
A message with a longer line is refused the same way (read to its end, sink abandoned). Lines are
measured per region with one C-speed regex search (``\\n[^\\n]{N}``: it can start only at a line
break, so each octet is looked at about once), plus a carried length for a line that spans regions.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Protocol

from hardmail.core.replies import Reply

_END_MARK = b"\r\n.\r\n"
_MAX_PENDING = 64 * 1024  # longest stretch held back while waiting for a CRLF


@lru_cache(maxsize=8)
def _overlong(limit: int) -> re.Pattern[bytes]:
    """A line break followed by ``limit`` octets without one: the next line is over the limit."""
    return re.compile(rb"\n[^\n]{%d}" % limit)


class LineMeter:
    """Tells whether any line of a stream of pieces is longer than ``limit`` octets including CRLF.

    Only the length of the unfinished last line is kept, so memory does not depend on line lengths.
    A line is too long when it has ``limit`` or more octets before its LF (the CR counts as one).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.too_long = False
        self._current = 0  # octets of the unfinished line so far

    def measure(self, piece: bytes) -> bool:
        """Account for the next piece; returns True once some line is too long."""
        if self.too_long:
            return True
        first = piece.find(b"\n")
        if first < 0:
            self._current += len(piece)
        else:
            if self._current + first >= self.limit or _overlong(self.limit).search(piece, first):
                self.too_long = True
            self._current = len(piece) - piece.rfind(b"\n") - 1
        if self._current >= self.limit:
            self.too_long = True
        return self.too_long


class ContentSink(Protocol):
    """Where a reader hands message content, piece by piece, in order."""

    def write(self, piece: bytes) -> None:
        """Take the next piece; must not block (the server queues it for a writer thread)."""

    def abandon(self) -> None:
        """The message is refused: drop what was taken; no more pieces come."""


class ChunkList:
    """A sink that keeps the content in memory."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, piece: bytes) -> None:
        self.chunks.append(piece)

    def abandon(self) -> None:
        self.chunks.clear()


class DataReader:
    """Consumes DATA content; :meth:`feed` returns the bytes that follow the end marker."""

    def __init__(self, max_size: int, sink: ContentSink | None = None, refused: Reply | None = None,
                 *, max_line_length: int = 1000) -> None:
        self.max_size = max_size
        self.sink: ContentSink = sink or ChunkList()
        self.refused = refused  # refused before it started (e.g. no room): read, keep nothing
        self.size = 0
        self.too_big = False
        self.bare_newline = False
        self.lines = LineMeter(max_line_length)
        self.done = False
        self._pending = bytearray()  # the unfinished line; never holds a CRLF
        self._line_start = True
        self._dropped = False

    def feed(self, data: bytes) -> bytes:
        """Take bytes; returns what is left after the end marker (empty until done).

        Only the new bytes (and the few before them that may start a CRLF or the end marker) are
        scanned, so feeding one byte at a time stays linear.
        """
        seen = len(self._pending)
        self._pending += data
        buf = self._pending
        if self._line_start and buf[:3] == b".\r\n":
            return self._finish(b"", bytes(buf[3:]))
        end = buf.find(_END_MARK, max(seen - 4, 0))
        if end >= 0:
            return self._finish(bytes(buf[: end + 2]), bytes(buf[end + 5:]))
        self._keep_tail(max(seen - 1, 0))
        return b""

    def _keep_tail(self, search_from: int) -> None:
        buf = self._pending
        cut = buf.rfind(b"\r\n", search_from) + 2
        if cut == 1:  # no CRLF at all
            if len(buf) < _MAX_PENDING:
                return
            cut = len(buf) - 1 if buf.endswith(b"\r") else len(buf)
        region = bytes(buf[:cut])
        del buf[:cut]
        if region:
            self._take(region)

    def _finish(self, content: bytes, rest: bytes) -> bytes:
        if content:
            self._take(content)
        self._pending = bytearray()
        self.done = True
        return rest

    def _take(self, region: bytes) -> None:
        """Account for a region that ends on a line boundary (or is cut in the middle of a line)."""
        crlf = region.count(b"\r\n")
        if region.count(b"\n") != crlf or region.count(b"\r") != crlf:
            self.bare_newline = True
        starts_line = self._line_start
        self._line_start = region.endswith(b"\r\n")
        if self.bare_newline or self.too_big or self.lines.too_long or self.refused:
            self._drop()
            return
        if starts_line and region[:1] == b".":  # RFC 5321 4.5.2
            region = region[1:]
        if b"\r\n." in region:
            region = region.replace(b"\r\n.", b"\r\n")
        if self.lines.measure(region):  # RFC 5321 4.5.3.1.6: measured without the stuffed dots
            self._drop()
            return
        self.size += len(region)
        if self.size > self.max_size:
            self.too_big = True
            self._drop()
            return
        self.sink.write(region)

    def _drop(self) -> None:
        """Tell the sink once that the message is refused."""
        if not self._dropped:
            self._dropped = True
            self.sink.abandon()


class BdatReader:
    """Consumes the octets of BDAT chunks (RFC 3030 2): no transparency, no end marker."""

    def __init__(self, max_size: int, sink: ContentSink | None = None, refused: Reply | None = None,
                 *, max_line_length: int = 1000) -> None:
        self.max_size = max_size
        self.sink: ContentSink = sink or ChunkList()
        self.refused = refused  # refused at its first chunk (e.g. no room): read, keep nothing
        self.size = 0
        self.too_big = False
        self.bare_newline = False  # BINARYMIME is not offered: content must be CRLF text as in DATA
        self.lines = LineMeter(max_line_length)  # RFC 5321 4.5.3.1.6: CRLF text, so lines are limited too
        self.remaining = 0
        self.last = False
        self._ends_with_cr = False
        self._dropped = False

    def start_chunk(self, size: int, last: bool) -> None:
        self.remaining = size
        self.last = last

    def feed(self, data: bytes) -> bytes:
        """Take bytes of the current chunk; returns the bytes past its end."""
        part, rest = data[: self.remaining], data[self.remaining:]
        self.remaining -= len(part)
        self.size += len(part)
        self._check_line_ends(part)
        if self.size > self.max_size or self.bare_newline:
            self.too_big = True
        if not (self.too_big or self.refused):
            self.lines.measure(part)
        if self.too_big or self.lines.too_long or self.refused:
            if not self._dropped:
                self._dropped = True
                self.sink.abandon()
        elif part:
            self.sink.write(part)
        return rest

    def _check_line_ends(self, part: bytes) -> None:
        """RFC 5321 2.3.8: every CR and LF belongs to a CRLF, also across chunk boundaries."""
        if self._ends_with_cr and part:
            if part[:1] != b"\n":
                self.bare_newline = True
            part = part[1:]  # the LF that completes the CR held over from the previous feed
            self._ends_with_cr = False
        if not part:
            return
        self._ends_with_cr = part.endswith(b"\r")
        body = part[:-1] if self._ends_with_cr else part
        crlf = body.count(b"\r\n")
        if body.count(b"\n") != crlf or body.count(b"\r") != crlf:
            self.bare_newline = True

    def finish_message(self) -> None:
        """At the LAST chunk: a final lone CR is bare too."""
        if self._ends_with_cr:
            self.bare_newline = True

    @property
    def chunk_done(self) -> bool:
        return self.remaining == 0
