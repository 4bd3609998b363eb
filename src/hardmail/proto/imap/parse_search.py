"""SEARCH, SORT and THREAD arguments (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 4731 RETURN, RFC 5182 ``$``,
RFC 7162 3.1.5 MODSEQ, RFC 5032 OLDER/YOUNGER, RFC 5256 SORT/THREAD) into the key tree of
``searchkeys``.
"""

from __future__ import annotations

from collections.abc import Callable

from hardmail.proto.imap.lexer import ParseError, Reader, decode_text
from hardmail.proto.imap.searchkeys import (
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SeqKey,
    SizeKey,
    TextKey,
    WithinKey,
)

CHARSETS = ("UTF-8", "US-ASCII")
BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"
MAX_DEPTH = 64  # nesting of NOT / OR / parentheses; deeper is refused, not recursed into
RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE")  # RFC 4731 3.1, RFC 5182 2.1
SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True), "RECENT": ("\\Recent", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False), "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False), "UNRECENT": ("\\Recent", False),
    "OLD": ("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {
    "BEFORE": ("internal", "before"), "ON": ("internal", "on"), "SINCE": ("internal", "since"),
    "SENTBEFORE": ("sent", "before"), "SENTON": ("sent", "on"), "SENTSINCE": ("sent", "since"),
}


class SearchParser:
    """Parses search keys with the charset of the command (strings are decoded with it)."""

    def __init__(self, reader: Reader, charset: str) -> None:
        self.r = reader
        self.charset = charset

    def text(self) -> str:
        raw = self.r.astring()
        if self.charset == "US-ASCII" and not raw.isascii():
            raise ParseError("8-bit data in a US-ASCII search")
        return decode_text(raw, "search string")

    def program(self) -> SearchKey:
        """``1*(SP search-key)`` after the command's options; the caller has not consumed the SP."""
        keys: list[SearchKey] = []
        while not self.r.at_end():
            self.r.sp()
            keys.append(self.key(0))
        if not keys:
            raise ParseError("Missing search key")
        return keys[0] if len(keys) == 1 else AndKey(tuple(keys))

    def key(self, depth: int) -> SearchKey:
        if depth > MAX_DEPTH:
            raise ParseError("Search keys nested too deeply")
        first = self.r.peek()
        if first == b"(":
            return self.group(depth)
        if first.isdigit() or first in (b"*", b"$"):
            return SeqKey(self.r.sequence_set())
        name = self.r.keyword("a search key")
        return self.named(name, depth)

    def group(self, depth: int) -> SearchKey:
        self.r.open()
        keys = [self.key(depth + 1)]
        while not self.r.take(b")"):
            self.r.sp()
            keys.append(self.key(depth + 1))
        return keys[0] if len(keys) == 1 else AndKey(tuple(keys))

    def named(self, name: str, depth: int) -> SearchKey:
        if name in _FLAG_KEYS:
            flag, present = _FLAG_KEYS[name]
            return FlagKey(flag, present)
        handler = _NAMED.get(name)
        if handler is None:
            raise ParseError(f"Unknown search key {name}")
        return handler(self, name, depth)

    def _arg(self) -> Reader:
        self.r.sp()
        return self.r


def _all(p: SearchParser, name: str, depth: int) -> SearchKey:
    return AllKey()


def _new(p: SearchParser, name: str, depth: int) -> SearchKey:
    return AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False)))  # RFC 3501 6.4.4: RECENT UNSEEN


def _header_alias(p: SearchParser, name: str, depth: int) -> SearchKey:
    p.r.sp()
    return HeaderKey(_HEADER_KEYS[name], p.text())


def _header(p: SearchParser, name: str, depth: int) -> SearchKey:
    field = decode_text(p._arg().astring("a header field name"), "header field name")  # any astring
    p.r.sp()
    return HeaderKey(field, p.text())


def _text(p: SearchParser, name: str, depth: int) -> SearchKey:
    p.r.sp()
    return TextKey("body" if name == "BODY" else "text", p.text())


def _keyword(p: SearchParser, name: str, depth: int) -> SearchKey:
    """KEYWORD flag-keyword; a system flag (``KEYWORD \\Seen``) is taken too, as Dovecot does."""
    return FlagKey(p._arg().flag(), name == "KEYWORD")


def _date(p: SearchParser, name: str, depth: int) -> SearchKey:
    field, op = _DATE_KEYS[name]
    return DateKey(field, op, p._arg().date())  # type: ignore[arg-type]


def _size(p: SearchParser, name: str, depth: int) -> SearchKey:
    return SizeKey("larger" if name == "LARGER" else "smaller", p._arg().number64(what="a size"))


def _within(p: SearchParser, name: str, depth: int) -> SearchKey:
    return WithinKey(name == "OLDER", p._arg().number(nonzero=True, what="a number of seconds"))


def _uid(p: SearchParser, name: str, depth: int) -> SearchKey:
    return SeqKey(p._arg().sequence_set(), uid=True)


def _not(p: SearchParser, name: str, depth: int) -> SearchKey:
    p.r.sp()
    return NotKey(p.key(depth + 1))


def _or(p: SearchParser, name: str, depth: int) -> SearchKey:
    p.r.sp()
    left = p.key(depth + 1)
    p.r.sp()
    return OrKey(left, p.key(depth + 1))


def _modseq(p: SearchParser, name: str, depth: int) -> SearchKey:
    """RFC 7162 3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer."""
    r = p._arg()
    entry = entry_type = None
    if r.peek() == b'"':
        entry = decode_text(r.quoted(), "entry name")
        if not entry.lower().startswith("/flags/"):
            raise ParseError("Invalid MODSEQ entry name")
        r.sp()
        entry_type = r.keyword("an entry type")
        if entry_type not in ("PRIV", "SHARED", "ALL"):
            raise ParseError("Invalid MODSEQ entry type")
        r.sp()
    return ModSeqKey(r.number64(what="a mod-sequence value"), entry, entry_type and entry_type.lower())


_NAMED: dict[str, Callable[[SearchParser, str, int], SearchKey]] = {
    "ALL": _all, "NEW": _new, "HEADER": _header, "BODY": _text, "TEXT": _text,
    "KEYWORD": _keyword, "UNKEYWORD": _keyword, "LARGER": _size, "SMALLER": _size, "UID": _uid,
    "NOT": _not, "OR": _or, "MODSEQ": _modseq, "OLDER": _within, "YOUNGER": _within,
    **{k: _header_alias for k in _HEADER_KEYS}, **{k: _date for k in _DATE_KEYS},
}


def charset_name(r: Reader) -> str:
    """``charset = atom / quoted``; only UTF-8 and US-ASCII are known (else NO [BADCHARSET])."""
    raw = r.quoted().decode("ascii", "replace") if r.peek() == b'"' else r.atom("a charset")
    name = raw.upper()
    if r.at_end():
        raise ParseError("Missing search key")
    if name not in CHARSETS:
        raise ParseError(f"Unsupported charset {raw}", status="NO", code=BADCHARSET)
    return name


def return_options(r: Reader) -> tuple[str, ...]:
    """RFC 4731 3.1: ``RETURN (opt ...)``; the caller consumed RETURN and the SP."""
    r.open()
    options: list[str] = []
    while not r.take(b")"):
        if options:
            r.sp()
        option = r.keyword("a RETURN option")
        if option not in RETURN_OPTIONS:
            raise ParseError(f"Unknown RETURN option {option}")
        options.append(option)
    return tuple(dict.fromkeys(options))


def search_args(r: Reader) -> tuple[str | None, tuple[str, ...] | None, SearchKey]:
    """``[SP "RETURN" SP (...)] [SP "CHARSET" SP charset] 1*(SP search-key)``."""
    returns: tuple[str, ...] | None = None
    charset: str | None = None
    if r.peek(8).upper() == b" RETURN ":
        r.pos += 8
        returns = return_options(r)
    if r.peek(9).upper() == b" CHARSET ":
        r.pos += 9
        charset = charset_name(r)
    key = SearchParser(r, charset or "UTF-8").program()
    return charset, returns, key


def sort_criteria(r: Reader) -> tuple[tuple[str, bool], ...]:
    """RFC 5256 3: ``"(" sort-criterion *(SP sort-criterion) ")"``; ``["REVERSE" SP] sort-key``."""
    r.open()
    out: list[tuple[str, bool]] = []
    while True:
        name = r.keyword("a sort key")
        reverse = name == "REVERSE"
        if reverse:
            r.sp()
            name = r.keyword("a sort key")
        if name not in SORT_KEYS:
            raise ParseError(f"Unknown sort key {name}")
        out.append((name, reverse))
        if r.take(b")"):
            return tuple(out)
        r.sp()


def thread_algorithm(r: Reader) -> str:
    name = r.keyword("a threading algorithm")
    if name not in THREAD_ALGORITHMS:
        raise ParseError(f"Unknown threading algorithm {name}")
    return name


def sort_tail(r: Reader) -> tuple[str, SearchKey]:
    """SORT/THREAD: ``SP charset 1*(SP search-key)`` (the charset is required, RFC 5256 3)."""
    r.sp()
    charset = charset_name(r)
    return charset, SearchParser(r, charset).program()
