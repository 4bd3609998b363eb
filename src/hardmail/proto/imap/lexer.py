"""Lexical layer of IMAP commands (RFC 9051 9 formal syntax): atoms, astrings, quoted strings with
escapes, literals (``{n}``, ``{n+}``, ``~{n}``), numbers, flags, sequence sets, dates.

:class:`Reader` walks one whole command (its lines joined with CRLF, literal data in place after
each literal header, the final CRLF removed) and raises :class:`ParseError` with a client-safe
text on the first deviation from the grammar.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from hardmail.proto.imap.sequence import MAX_NUMBER, STAR, SequenceSet

# RFC 9051 9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
_ATOM = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+')
_ASTRING = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\\x80-\xff]+')  # ASTRING-CHAR = ATOM-CHAR / "]"
_LIST_CHARS = re.compile(rb'[^(){ \x00-\x1f\x7f"\\\x80-\xff]+')  # list-char adds "%" "*" "]"
_TAG = re.compile(rb'[^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+')  # tag = ASTRING-CHAR except "+"
# quoted = DQUOTE *QUOTED-CHAR DQUOTE; QUOTED-CHAR = TEXT-CHAR except quoted-specials / "\" quoted-specials
# / UTF8-2 / UTF8-3 / UTF8-4 (rev2); TEXT-CHAR excludes CR, LF and NUL.
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_UNESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\r\n")
_NUMBER = re.compile(rb"[0-9]+")
_SEQSET = re.compile(rb"[0-9*:,$]+")
_SEQ_RANGE = re.compile(rb"^(\*|[1-9][0-9]*)(?::(\*|[1-9][0-9]*))?$")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(rb'"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) '
                        rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"')
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
MAX_NUMBER64 = 2**63 - 1


class ParseError(Exception):
    """Input that breaks the grammar; ``text`` is safe to show the client."""

    def __init__(self, text: str, *, status: str = "BAD", code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
        self.code = code


class Reader:
    """A cursor over one command's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    # ----- primitives -------------------------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self, n: int = 1) -> bytes:
        return self.data[self.pos:self.pos + n]

    def take(self, literal: bytes) -> bool:
        """Consume ``literal`` (ASCII, case-insensitive) if it is next."""
        if self.data[self.pos:self.pos + len(literal)].upper() == literal.upper():
            self.pos += len(literal)
            return True
        return False

    def expect(self, literal: bytes, what: str | None = None) -> None:
        if not self.take(literal):
            raise ParseError(f"Expected {what or repr(literal.decode())}")

    def sp(self) -> None:
        if not self.take(b" "):
            if self.at_end():
                raise ParseError("Missing argument")
            if self.peek() >= b"\x80":
                raise ParseError("8-bit text must be in a quoted string or a literal")
            raise ParseError("Expected a single space")

    def end(self) -> None:
        if not self.at_end():
            raise ParseError("Unexpected extra arguments")

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        match = pattern.match(self.data, self.pos)
        if match is None:
            raise ParseError(f"Expected {what}")
        self.pos = match.end()
        return match.group(0)

    # ----- tokens -----------------------------------------------------------------------------
    def tag(self) -> str:
        return self._match(_TAG, "a tag").decode("ascii")

    def atom(self, what: str = "an atom") -> str:
        return self._match(_ATOM, what).decode("ascii")

    def keyword(self, what: str = "a keyword") -> str:
        """An atom, upper-cased (command names, options)."""
        return self.atom(what).upper()

    def number(self, *, nonzero: bool = False, limit: int = MAX_NUMBER, what: str = "a number") -> int:
        digits = self._match(_NUMBER, what)
        value = int(digits) if len(digits) <= 20 else limit + 1
        if value > limit:
            raise ParseError(f"Number too large: expected {what}")
        if nonzero and value == 0:
            raise ParseError(f"Expected {what} (not 0)")
        return value

    def number64(self, *, nonzero: bool = False, what: str = "a number") -> int:
        return self.number(nonzero=nonzero, limit=MAX_NUMBER64, what=what)

    def quoted(self) -> bytes:
        match = _QUOTED.match(self.data, self.pos)
        if match is None:
            raise ParseError("Invalid quoted string")
        _check_utf8(match.group(1), "quoted string")
        self.pos = match.end()
        return _UNESCAPE.sub(rb"\1", match.group(1))

    def literal(self, *, allow_binary: bool = False) -> tuple[bytes, bool]:
        """A literal's data and whether it was a literal8 (``~{n}``, RFC 3516 4.2)."""
        match = _LITERAL.match(self.data, self.pos)
        if match is None:
            raise ParseError("Invalid literal")
        binary = bool(match.group(1))
        if binary and not allow_binary:
            raise ParseError("literal8 is not allowed here")
        size = int(match.group(2))
        start = match.end()
        if start + size > len(self.data):  # the framer guarantees this; kept as a safety net
            raise ParseError("Truncated literal")
        value = self.data[start:start + size]
        if not binary and b"\x00" in value:
            raise ParseError("NUL in a literal (RFC 9051 4.3: use literal8)")
        self.pos = start + size
        return value, binary

    def string(self) -> bytes:
        first = self.peek()
        if first == b'"':
            return self.quoted()
        if first in (b"{", b"~"):
            return self.literal()[0]
        raise ParseError("Expected a string")

    def astring(self, what: str = "a string") -> bytes:
        if self.peek() in (b'"', b"{"):
            return self.string()
        try:
            return self._match(_ASTRING, what)
        except ParseError:
            raise ParseError(f"Expected {what}") from None

    def nstring(self) -> bytes | None:
        if self.peek(3).upper() == b"NIL" and not _ATOM.match(self.data, self.pos + 3):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        if self.peek() in (b'"', b"{"):
            return self.string()
        return self._match(_LIST_CHARS, "a mailbox pattern")

    def open(self) -> None:
        self.expect(b"(")

    def close(self) -> None:
        self.expect(b")")

    # ----- composite values -------------------------------------------------------------------
    def flag(self) -> str:
        """RFC 9051 9 ``flag``: a system flag (normalised spelling) or a keyword atom."""
        if self.take(b"\\"):
            name = "\\" + self.atom("a flag name")
            if name.upper() not in SYSTEM_FLAGS:
                raise ParseError(f"Invalid system flag {name}")
            return SYSTEM_FLAGS[name.upper()]
        return self.atom("a flag")

    def flag_list(self) -> tuple[str, ...]:
        self.open()
        flags: list[str] = []
        while not self.take(b")"):
            if flags:
                self.sp()
            flags.append(self.flag())
        return tuple(dict.fromkeys(flags))

    def sequence_set(self) -> SequenceSet:
        text = self._match(_SEQSET, "a sequence set")
        ranges: list[tuple[int, int]] = []
        saved = False
        for piece in text.split(b","):
            if piece == b"$":  # RFC 5182 3
                saved = True
                continue
            match = _SEQ_RANGE.match(piece)
            if match is None:
                raise ParseError("Invalid sequence set")
            lo = _seq_number(match.group(1))
            hi = _seq_number(match.group(2)) if match.group(2) else lo
            ranges.append((lo, hi))
        return SequenceSet(tuple(ranges), saved)

    def date(self) -> date:
        """RFC 9051 9 ``date``: date-text or a quoted date-text."""
        quoted = self.take(b'"')
        match = _DATE.match(self.data, self.pos)
        if match is None:
            raise ParseError("Invalid date (expected dd-Mon-yyyy)")
        self.pos = match.end()
        if quoted:
            self.expect(b'"', "closing quote of the date")
        return _make_date(match.group(1), match.group(2), match.group(3))

    def date_time(self) -> datetime:
        """RFC 9051 9 ``date-time``: "dd-Mon-yyyy hh:mm:ss +zzzz"."""
        match = _DATE_TIME.match(self.data, self.pos)
        if match is None:
            raise ParseError('Invalid date-time (expected "dd-Mon-yyyy hh:mm:ss +zzzz")')
        self.pos = match.end()
        day = _make_date(match.group(1).strip(), match.group(2), match.group(3))
        hour, minute, second = (int(match.group(i)) for i in (4, 5, 6))
        zone_h, zone_m = int(match.group(8)), int(match.group(9))
        if hour > 23 or minute > 59 or second > 60 or zone_m > 59:
            raise ParseError("Invalid time in date-time")
        offset = timedelta(hours=zone_h, minutes=zone_m) * (-1 if match.group(7) == b"-" else 1)
        return datetime(day.year, day.month, day.day, hour, minute, min(second, 59), tzinfo=timezone(offset))


def _seq_number(text: bytes) -> int:
    if text == b"*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise ParseError("Sequence number too large")
    return int(text)


def _make_date(day: bytes, month: bytes, year: bytes) -> date:
    name = month.decode("ascii").upper()
    if name not in MONTHS:
        raise ParseError(f"Invalid month {month.decode('ascii')}")
    try:
        return date(int(year), MONTHS.index(name) + 1, int(day))
    except ValueError:
        raise ParseError("Invalid date") from None


def _check_utf8(raw: bytes, what: str) -> None:
    if raw.isascii():
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"Invalid UTF-8 in {what}") from None


def decode_text(raw: bytes, what: str = "string") -> str:
    """Bytes of a string argument as text: UTF-8 (RFC 9051 and RFC 6855), else BAD."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"Invalid UTF-8 in {what}") from None
