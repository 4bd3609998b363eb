"""The MIME tree of a message (RFC 2045, RFC 2046) with the byte offsets IMAP needs: where each
part's header and body start and end, its Content-* values, its children (multipart) or the
message it encloses (message/rfc822, message/global).

One pass, in document order: delimiter lines are found by one regular expression per stack of
open boundaries (innermost first, like Dovecot), and the empty line that ends each header block
is found by one forward search whose result is reused, so the cost is linear in the message times
the nesting depth, which is bounded (MAX_DEPTH); MAX_PARTS bounds the parts. Malformed input still
gives a usable tree, read as Dovecot 2.3 reads it (tests/data/mime: the corpus, its broken copies
and random structures are compared with Dovecot's answers): a missing close delimiter ends the
multipart where its enclosing one ends (or at the end of the message); a multipart without a
boundary or without any delimiter has no children; a header block without an empty line ends at
the next delimiter; a delimiter cut at the end of the message starts no part; a message without
MIME-Version and Content-Type is not MIME (:attr:`Part.mime`). A bare LF ends a line as a CRLF
does (but serve and parse :func:`crlf` of a stored message). Every header block is read by
:func:`hardmail.mime.headers.parse_header_block`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hardmail.mime.headers import HEAD_LIMIT, HeaderBlock, parse_header_block
from hardmail.mime.params import ParamValue, parse_content_type, parse_disposition

MAX_DEPTH = 25  # nested multiparts and messages; deeper ones are leaves (real mail: < 10)
MAX_PARTS = 5000  # parts per message; the rest are inside the last leaf
MAX_HEADER = HEAD_LIMIT  # bytes of a header block read as fields (its span is all of it)
MAX_BOUNDARY = 200  # RFC 2046 5.1.1: at most 70; a longer one is still read, up to this
_BLANK = re.compile(rb"\n\r?\n")
DEFAULT_TYPE = ParamValue("text/plain", (("charset", b"us-ascii"),), ("text", "plain"))
DIGEST_DEFAULT = ParamValue("message/rfc822", (), ("message", "rfc822"))
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})


@dataclass(slots=True, eq=False)
class Part:
    """One MIME part. Offsets index the whole message given to :func:`parse_message`."""

    start: int  # first byte of the header block (= where the part starts)
    header_end: int  # after the last header line (before the empty line)
    body_start: int  # after the empty line that ends the header block
    body_end: int  # before the line end that belongs to the next delimiter (RFC 2046 5.1.1)
    header: HeaderBlock
    content_type: ParamValue  # the default (text/plain us-ascii, or message/rfc822 in a digest)
    explicit_type: bool  # the header had a readable Content-Type
    lines: int = 0  # LFs in the body (a last line without one is not counted, as by Dovecot)
    children: list[Part] = field(default_factory=list)  # a multipart's parts
    message: Part | None = None  # the message a message/rfc822 part encloses
    overflow: bool = False  # a multipart or message read as a leaf (MAX_DEPTH, MAX_PARTS)
    # False for a message (the root, an enclosed one) without MIME-Version and Content-Type: its
    # other Content-* fields are not shown in BODYSTRUCTURE (as Dovecot); BINARY still decodes
    mime: bool = True

    @property
    def maintype(self) -> str:
        return self.content_type.value.partition("/")[0]

    @property
    def subtype(self) -> str:
        return self.content_type.value.partition("/")[2]

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart" and not self.overflow

    @property
    def is_message(self) -> bool:
        return self.message is not None

    @property
    def body_size(self) -> int:
        return self.body_end - self.body_start

    def field_value(self, name: str) -> bytes | None:
        """The first ``name`` field's value, unfolded, as bytes; None if absent."""
        found = self.header.named(name)
        return self.header.raw_value(found[0]) if found else None

    @property
    def encoding(self) -> str:
        """Content-Transfer-Encoding lower-cased; "7bit" when absent (RFC 2045 6.1)."""
        return self.encoding_as_written.lower()

    @property
    def encoding_as_written(self) -> str:
        value = self.field_value("content-transfer-encoding")
        text = value.decode("ascii", "replace").strip() if value else ""
        return text or "7bit"

    @property
    def disposition(self) -> ParamValue | None:
        value = self.field_value("content-disposition")
        return None if value is None else parse_disposition(value)

    def walk(self) -> list[Part]:
        """This part and every part below it, in document order."""
        out, stack = [], [self]
        while stack:
            part = stack.pop()
            out.append(part)
            below = part.children if part.message is None else [part.message]
            stack.extend(reversed(below))
        return out


@dataclass(frozen=True, slots=True)
class _Delimiter:
    start: int  # the first "-" of the line
    end: int  # after the line's LF (or the end of the message)
    level: int  # index in the boundary stack
    close: bool


class _Parser:
    def __init__(self, data: bytes, max_depth: int, max_parts: int) -> None:
        self.data = data
        self.size = len(data)
        self.max_depth = max_depth
        self.max_parts = max_parts
        self.parts = 0
        self._blank_from = -1
        self._blank_at = -1
        self._patterns: dict[tuple[bytes, ...], tuple[re.Pattern[bytes], dict[bytes, int]]] = {}

    def _blank_line(self, start: int) -> int:
        """Offset of the LF ending the last header line of a block starting at ``start`` (-1: none).
        Part starts only grow, so the last answer is reused while it lies ahead: one pass."""
        if self._blank_from < 0 or start < self._blank_from or 0 <= self._blank_at < start:
            found = _BLANK.search(self.data, start)
            self._blank_from, self._blank_at = start, (found.start() if found else -1)
        return self._blank_at

    def _pattern(self, stack: list[bytes]) -> tuple[re.Pattern[bytes], dict[bytes, int]]:
        """A pattern for the delimiter lines of ``stack`` (RFC 2046 5.1.1: ``--boundary`` then
        only white space, or ``--boundary--``) and each boundary's level (the innermost one
        for a repeated boundary)."""
        key = tuple(stack)
        cached = self._patterns.get(key)
        if cached is None:
            levels = {boundary: level for level, boundary in enumerate(stack)}
            choices = b"|".join(re.escape(b) for b in sorted(levels, key=len, reverse=True))
            # a close delimiter may be followed by anything on its line (as Dovecot reads it)
            pattern = re.compile(rb"^--(" + choices + rb")(?:(--)[^\r\n]*|[ \t]*)(?:\r?\n|\r?\Z)", re.M)
            cached = self._patterns[key] = (pattern, levels)
        return cached

    def next_delimiter(self, pos: int, stack: list[bytes], limit: int = -1) -> _Delimiter | None:
        """The first delimiter line of a boundary in ``stack`` starting at or after ``pos`` (and
        before ``limit``). The search runs in the regular expression engine, one pass."""
        if not stack:
            return None
        pattern, levels = self._pattern(stack)
        endpos = self.size if limit < 0 else min(self.size, limit + MAX_BOUNDARY + 8)
        while True:
            found = pattern.search(self.data, pos, endpos)
            if found is None or 0 <= limit <= found.start():
                return None
            if found.end() == endpos < self.size:  # the search stopped inside this line: read all of it
                whole = pattern.match(self.data, found.start())
                if whole is None:
                    pos = found.start() + 1
                    continue
                found = whole
            return _Delimiter(found.start(), found.end(), levels[found.group(1)], found.group(2) is not None)

    def end_before(self, delimiter: _Delimiter | None, floor: int) -> int:
        """Where the content before ``delimiter`` ends: its preceding line end belongs to it."""
        if delimiter is None:
            return self.size
        at = delimiter.start
        if at >= 1 and self.data[at - 1] == 0x0A:
            at -= 2 if at >= 2 and self.data[at - 2] == 0x0D else 1
        return max(at, floor)

    def header(self, start: int, stack: list[bytes], message: bool) -> tuple[HeaderBlock, int, int]:
        """The part's header block, where it ends and where the body starts. A delimiter before
        the empty line ends the header; the line end before a delimiter is the delimiter's
        (RFC 2046 5.1.1), never the part's."""
        data = self.data
        if data.startswith(b"\n", start) or data.startswith(b"\r\n", start):
            header_end, body_start = start, start + (1 if data[start] == 0x0A else 2)
        else:
            blank = self._blank_line(start)
            header_end = self.size if blank < 0 else blank + 1
            body_start = self.size if blank < 0 else _BLANK.match(data, blank).end()  # type: ignore[union-attr]
        first = self.next_delimiter(start, stack, body_start + 2)  # only one this near cuts the header
        # the line end before that delimiter is the delimiter's; an enclosed message's header
        # keeps it (both as Dovecot reads them)
        part_end = first.start if message and first is not None else self.end_before(first, start)
        header_end, body_start = min(header_end, part_end), min(body_start, part_end)
        fields_end = min(header_end, start + MAX_HEADER)  # the rest of a huge header is not read
        return parse_header_block(data[start:fields_end], bare_lf=True), header_end, body_start

    def part(self, start: int, stack: list[bytes], depth: int, default: ParamValue = DEFAULT_TYPE,
             message: bool = True) -> tuple[Part, _Delimiter | None]:
        """The part at ``start`` (a message's top when ``message``) and the delimiter (of a
        boundary in ``stack``) that ended it."""
        self.parts += 1
        block, header_end, body_start = self.header(start, stack, message)
        content_type, explicit = _content_type(block, default)
        part = Part(start, header_end, body_start, body_start, block, content_type, explicit)
        part.mime = not message or bool(block.named("mime-version", "content-type"))
        nested = depth < self.max_depth and self.parts < self.max_parts
        boundary = content_type.param("boundary")
        floor = body_start
        if part.maintype == "multipart" and nested and boundary:
            ended, floor = self.multipart(part, [*stack, boundary[:MAX_BOUNDARY]], depth)
        elif part.maintype == "multipart" and nested:  # no boundary: a multipart without parts
            ended = self.next_delimiter(body_start, stack)
        elif content_type.value in MESSAGE_TYPES and nested:
            part.message, ended = self.part(body_start, stack, depth + 1)
            floor = part.message.body_start  # its header's empty line may be the last line
        else:
            part.overflow = part.maintype == "multipart"
            ended = self.next_delimiter(body_start, stack)
        part.body_end = self.end_before(ended, floor)
        part.lines = self.data.count(b"\n", part.body_start, part.body_end)
        return part, ended

    def multipart(self, part: Part, stack: list[bytes], depth: int) -> tuple[_Delimiter | None, int]:
        """Read the children; the delimiter of an enclosing boundary that ended the multipart, and
        where its body ends at the least (after the close delimiter's line, as Dovecot reads it)."""
        own = len(stack) - 1
        default = DIGEST_DEFAULT if part.subtype == "digest" else DEFAULT_TYPE
        delimiter = self.next_delimiter(part.body_start, stack)
        while delimiter is not None and delimiter.level == own and not delimiter.close:
            if delimiter.end == self.size and not self.data.endswith(b"\n"):
                return None, part.body_start  # a last line cut after it: no part starts (Dovecot)
            if self.parts >= self.max_parts:
                delimiter = self.next_delimiter(delimiter.end, stack[:own])
                break
            child, delimiter = self.part(delimiter.end, stack, depth + 1, default, message=False)
            part.children.append(child)
        if delimiter is not None and delimiter.level == own:  # the close delimiter: the epilogue
            return self.next_delimiter(delimiter.end, stack[:own]), delimiter.end
        return delimiter, part.body_start  # no close delimiter: an enclosing one ends it


def _content_type(block: HeaderBlock, default: ParamValue) -> tuple[ParamValue, bool]:
    found = block.named("content-type")
    if not found:
        return default, False
    parsed = parse_content_type(block.raw_value(found[0]))
    if not parsed.value:  # unreadable: RFC 2045 5.2 says text/plain; us-ascii
        return DEFAULT_TYPE, False
    return parsed, True


_BARE_LF = re.compile(rb"(?<!\r)\n")


def crlf(data: bytes) -> bytes:
    """``data`` with every bare LF made a CRLF (the same object when there is none). IMAP lines end
    in CRLF (RFC 9051 2.2); Dovecot serves a stored file with LF line ends this way, and sizes,
    line counts and sections are then those of the CRLF form: parse what you serve."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def parse_message(data: bytes, *, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> Part:
    """The MIME tree of the message ``data`` (its root part spans the whole message)."""
    parser = _Parser(data, max_depth, max_parts)
    root, _ = parser.part(0, [], 0)
    root.body_end = len(data)
    return root
