"""The header block of a message (RFC 5322 2.2, 2.1): its fields with their byte spans, names and
unfolded values, and every line that is not a well-formed part of a field.

This is the one header parser of hardmail: the SMTP session (loop detection, originator checks,
trust-field removal), DMARC, DKIM signing, the spam verdict and the submission headers all read the
header block through :func:`parse_header_block`, so that no two paths can disagree about which
fields a message has. Written by hand rather than with ``email.parser``: that parser silently
skips a ``From :`` line and stops at the first malformed line, hiding the fields after it, and it
is not linear on hostile input. This one is one pass over the block (each ``find``/``search`` is
bounded by the line it looks at), so its cost is linear in the block size.

Numbering: ``HeaderBlock.fields[i]`` is field ``i`` (0-based, in the order of the block). A field
is a line that starts with a name and a colon plus the continuation lines that follow it; lines
that are not part of a field (:class:`BadLine`) are not numbered. ``MessageDecision.drop_headers``
uses this numbering, on the header block of the message as the hooks see it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Only this much of a message is read as its header block (the same bound as
# delivery.pipeline.message_head). Like Postfix's header_size_limit, the bound ends the header
# block: what lies beyond it is never parsed; the session refuses a message whose header block
# does not end within it, so no field can hide past the bound.
HEAD_LIMIT = 256 * 1024

# RFC 5322 2.2: field-name = 1*ftext, printable US-ASCII except ":"
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# RFC 5322 2.2, 2.3: CR and LF only together as CRLF; NUL is never allowed (RFC 5322 4.1 obs-text)
_BAD_CONTROL = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")
_WSP = (0x20, 0x09)


@dataclass(frozen=True, slots=True)
class HeaderField:
    name: str  # lower-cased; ``Name : value`` (RFC 5322 4.5.3 obsolete syntax) is the field ``name``
    start: int  # offset of its first byte in the block
    end: int  # offset after the CRLF of its last (continuation) line
    colon: int  # offset of the colon that ends the name
    obsolete: bool  # white space between the name and the colon (RFC 5322 4.5.3)


@dataclass(frozen=True, slots=True)
class BadLine:
    start: int
    end: int
    reason: str


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    data: bytes  # the header lines, each with its CRLF, without the empty line that ends them
    fields: tuple[HeaderField, ...]
    bad_lines: tuple[BadLine, ...]
    complete: bool  # an empty line ended the block within the bytes given (RFC 5322 2.1)
    # lines may end in a bare LF (``parse_header_block(..., bare_lf=True)``: stored messages that
    # IMAP reads as they are); the empty line that ended the block then is 1 or 2 bytes long
    bare_lf: bool = False
    separator: int = 2

    @property
    def body_offset(self) -> int:
        """Where the body starts in the bytes given (after the empty line), when complete."""
        return len(self.data) + self.separator if self.complete else len(self.data)

    def raw(self, field: HeaderField) -> bytes:
        return self.data[field.start:field.end]

    def value(self, field: HeaderField) -> str:
        """The value unfolded (RFC 5322 2.2.3: each CRLF before white space removed), stripped, as
        text (RFC 6532: UTF-8; undecodable bytes replaced)."""
        return self.raw_value(field).decode("utf-8", "replace")

    def raw_value(self, field: HeaderField, *, strip_end: bool = True) -> bytes:
        """The value unfolded and stripped, as bytes (8-bit kept as it is); with ``strip_end``
        false, white space at its end stays (IMAP ENVELOPE shows it, as Dovecot does)."""
        raw = self.data[field.colon + 1:field.end].replace(b"\r\n", b"")
        if self.bare_lf:  # a last line may end in a CR without its LF (a cut message)
            raw = raw.replace(b"\n", b"").rstrip(b"\r")
        return raw.strip(b" \t") if strip_end else raw.lstrip(b" \t")

    def named(self, *names: str) -> list[HeaderField]:
        """The fields with one of ``names`` (lower-case), in order."""
        return [f for f in self.fields if f.name in names]

    def positions(self, *names: str) -> tuple[int, ...]:
        return tuple(i for i, f in enumerate(self.fields) if f.name in names)

    def names(self) -> set[str]:
        return {f.name for f in self.fields}


_EMPTY_LINE_LF = re.compile(rb"\n\r?\n")


def split_block_lf(message_start: bytes) -> tuple[bytes, bool, int]:
    """:func:`split_block` where a line may end in a bare LF: also the length of the empty line."""
    if message_start.startswith((b"\r\n", b"\n")):
        return b"", True, 2 if message_start[0] == 0x0D else 1
    found = _EMPTY_LINE_LF.search(message_start)
    if found is None:
        return message_start, False, 0
    return message_start[: found.start() + 1], True, found.end() - found.start() - 1


def split_block(message_start: bytes) -> tuple[bytes, bool]:
    """The header lines (each with its CRLF, without the empty line) and whether an empty line
    ended them. RFC 5322 2.1: the header section ends at the first empty line."""
    if message_start.startswith(b"\r\n"):
        return b"", True
    end = message_start.find(b"\r\n\r\n")
    if end < 0:
        return message_start, False
    return message_start[: end + 2], True


class _Builder:
    """The fields and bad lines found so far; one field stays open for its continuation lines."""

    def __init__(self) -> None:
        self.fields: list[HeaderField] = []
        self.bad: list[BadLine] = []
        self.open: HeaderField | None = None

    def close(self) -> None:
        if self.open is not None:
            self.fields.append(self.open)
            self.open = None

    def line(self, data: bytes, start: int, end: int) -> None:
        if data[start] in _WSP:  # RFC 5322 2.2.3: a folded continuation of the open field
            self._continuation(data, start, end)
        else:
            self.close()
            self._field_start(data, start, end)
        control = _BAD_CONTROL.search(data, start, end)
        if control is not None:
            self.bad.append(BadLine(start, end, "bare CR, LF or NUL"))

    def _continuation(self, data: bytes, start: int, end: int) -> None:
        if self.open is None:
            # not a field by RFC 5322 2.2.3, but a lenient reader may take it for one: it is read
            # as a field too (so that a forged verdict or a From there is seen), and flagged
            self.bad.append(BadLine(start, end, "continuation line before any field"))
            self._field_start(data, start, end, lenient=True)
            return
        if not data[start:end].strip(b" \t\r\n"):  # RFC 5322 4.2: obsolete; read by some as the end
            self.bad.append(BadLine(start, end, "line of white space only"))
        self.open = HeaderField(self.open.name, self.open.start, end, self.open.colon, self.open.obsolete)

    def _field_start(self, data: bytes, start: int, end: int, lenient: bool = False) -> None:
        colon = data.find(b":", start, end)
        name = data[start:colon].strip(b" \t") if lenient else data[start:colon].rstrip(b" \t")
        if colon < 0 or not _FIELD_NAME.fullmatch(name):
            if not lenient:
                reason = "line without a colon" if colon < 0 else "invalid field name"
                self.bad.append(BadLine(start, end, reason))
            return
        obsolete = data[colon - 1] in _WSP
        self.open = HeaderField(name.decode("ascii").lower(), start, end, colon, obsolete)


def parse_header_block(message_start: bytes, *, bare_lf: bool = False) -> HeaderBlock:
    """The header block at the start of ``message_start`` (a whole message or its first bytes).

    With ``bare_lf``, a bare LF ends a line too (such lines are still reported as bad lines):
    IMAP serves stored messages as they are, and some were written with LF line ends."""
    separator = 2
    if bare_lf:
        data, complete, separator = split_block_lf(message_start)
    else:
        data, complete = split_block(message_start)
    builder = _Builder()
    eol, eol_size = (b"\n", 1) if bare_lf else (b"\r\n", 2)
    at, size = 0, len(data)
    while at < size:
        crlf = data.find(eol, at)
        end = size if crlf < 0 else crlf + eol_size
        builder.line(data, at, end)
        at = end
    builder.close()
    return HeaderBlock(data, tuple(builder.fields), tuple(builder.bad), complete, bare_lf, separator)


def _kept(block: HeaderBlock, drop: set[int]) -> bytes:
    """The block without the fields at ``drop`` (continuation lines included); bad lines stay."""
    data = memoryview(block.data)  # slices of a memoryview are not copies: the join is the one copy
    pieces, at = [], 0
    for index, field in enumerate(block.fields):
        if index in drop:
            pieces.append(data[at:field.start])
            at = field.end
    pieces.append(data[at:])
    return b"".join(pieces)


def _head_of(chunks: Iterator[bytes], limit: int) -> tuple[bytearray, bytes, int]:
    """Read chunks until the header block has ended or ``limit`` bytes are held: the bytes read,
    the last chunk taken and how much of it is in those bytes. Each chunk is taken once and only
    the new bytes (and the 3 before them) are searched, so this is linear in the bytes read."""
    head, last, used = bytearray(), b"", 0
    for chunk in chunks:
        searched_from = max(0, len(head) - 3)
        taken = chunk[: limit - len(head)]
        head += taken
        last, used = chunk, len(taken)
        if head[:2] == b"\r\n" or head.find(b"\r\n\r\n", searched_from) >= 0 or len(head) >= limit:
            break
    return head, last, used


def _rest_after(pieces: Iterator[bytes], skip: int) -> bytes:
    """Take chunks until ``skip`` bytes are passed; what the last one holds after them."""
    for chunk in pieces:
        if skip < len(chunk):
            return chunk[skip:]
        skip -= len(chunk)
    return b""


def without_fields(chunks: Iterable[bytes], positions: Iterable[int], block: HeaderBlock | None = None,
                   limit: int = HEAD_LIMIT) -> list[bytes]:
    """``chunks`` (a message in pieces) with the header fields at ``positions`` removed.

    ``block`` is the header block already parsed from the start of these chunks, if the caller
    has it. Linear in the message whatever its chunking: only the first ``limit`` bytes are ever
    read as the header block, each chunk is taken once, and the chunks after the header block are
    passed on untouched.
    """
    drop = set(positions)
    pieces = iter(chunks)
    if not drop:
        return list(pieces)
    if block is None:
        head, last, used = _head_of(pieces, limit)
        data = bytes(head)
        del head  # at most one copy of the head is held at a time
        block = parse_header_block(data)
        out = [_kept(block, drop), data[len(block.data):], last[used:]]
    else:
        out = [_kept(block, drop), _rest_after(pieces, len(block.data))]
    return [piece for piece in out if piece] + list(pieces)
