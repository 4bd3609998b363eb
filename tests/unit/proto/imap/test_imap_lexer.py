"""The lexical rules of RFC 9051 9, byte by byte: atom, astring, list-mailbox and tag characters,
quoted strings and their escapes, literals, numbers, dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from hardmail.proto.imap.lexer import ParseError, Reader

# RFC 9051 9, written out independently of the lexer's regular expressions.
CTL = set(range(0x00, 0x20)) | {0x7F}
ATOM_SPECIALS = {ord(ch) for ch in '(){ %*"\\]'} | CTL
ATOM_CHARS = {b for b in range(0x01, 0x80) if b not in ATOM_SPECIALS}  # CHAR = %x01-7F
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
LIST_CHARS = ATOM_CHARS | {ord("%"), ord("*"), ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}


def accepts(method: str, data: bytes) -> bool:
    reader = Reader(data)
    try:
        getattr(reader, method)()
    except ParseError:
        return False
    return reader.at_end()


@pytest.mark.parametrize(("method", "allowed"), [("atom", ATOM_CHARS), ("astring", ASTRING_CHARS),
                                                 ("list_mailbox", LIST_CHARS), ("tag", TAG_CHARS)])
def test_character_classes_match_the_grammar_for_every_byte(method: str, allowed: set[int]) -> None:
    for byte in range(256):
        if method in ("astring", "list_mailbox") and byte in (ord('"'), ord("{")):
            continue  # these start a quoted string or a literal instead
        assert accepts(method, b"a" + bytes([byte]) + b"z") is (byte in allowed), (method, hex(byte))


@pytest.mark.parametrize(("wire", "value"), [
    (b'""', b""), (b'"abc"', b"abc"), (b'"a\\"b"', b'a"b'), (b'"a\\\\b"', b"a\\b"), (b'"\\\\"', b"\\"),
    (b'"sp ace ( ) { } ] % *"', b"sp ace ( ) { } ] % *"), (b'"\xc3\xa9t\xc3\xa9"', "été".encode()),
    (b'"\x01\x7f"', b"\x01\x7f"), (b'"{5}"', b"{5}"),
])
def test_quoted_strings(wire: bytes, value: bytes) -> None:
    reader = Reader(wire)
    assert reader.quoted() == value and reader.at_end()


@pytest.mark.parametrize("wire", [b'"abc', b'"a\\b"', b'"a\\"', b'"\\', b'"a\rb"', b'"a\nb"', b'"a\x00b"',
                                  b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b"abc"])
def test_bad_quoted_strings(wire: bytes) -> None:
    with pytest.raises(ParseError):
        Reader(wire).quoted()


def test_literals() -> None:
    assert Reader(b"{3}\r\nabc").literal() == (b"abc", False)
    assert Reader(b"{3+}\r\na\r\n").literal() == (b"a\r\n", False)
    assert Reader(b"~{2}\r\n\x00\xff").literal(allow_binary=True) == (b"\x00\xff", True)
    assert Reader(b"{0}\r\n").string() == b""
    for bad in (b"{3}abc", b"{3}\r\nab", b"{x}\r\nabc", b"{-1}\r\n", b"{3} \r\nabc", b"{1}\r\n\x00"):
        with pytest.raises(ParseError):
            Reader(bad).literal()
    with pytest.raises(ParseError):
        Reader(b"~{1}\r\nx").string()  # literal8 only where the grammar has it (APPEND)


def test_nstring_and_numbers() -> None:
    assert Reader(b"NIL").nstring() is None and Reader(b"nil").nstring() is None
    assert Reader(b'"NIL"').nstring() == b"NIL"
    with pytest.raises(ParseError):
        Reader(b"NILS").nstring()
    assert Reader(b"4294967295").number() == 4294967295
    for bad, kwargs in ((b"4294967296", {}), (b"0", {"nonzero": True}), (b"", {}), (b"x", {}),
                        (b"9" * 30, {})):
        with pytest.raises(ParseError):
            Reader(bad).number(**kwargs)  # type: ignore[arg-type]
    assert Reader(b"9223372036854775807").number64() == 2**63 - 1
    with pytest.raises(ParseError):
        Reader(b"9223372036854775808").number64()


def test_dates_and_date_times() -> None:
    assert Reader(b"1-Feb-1994").date() == date(1994, 2, 1)
    assert Reader(b'"29-feb-2024"').date() == date(2024, 2, 29)
    for bad in (b"29-Feb-2023", b"1-Feb-94", b"1 Feb 1994", b'"1-Feb-1994', b"123-Feb-1994", b"1-Fe-1994"):
        with pytest.raises(ParseError):
            reader = Reader(bad)
            reader.date()
            reader.end()
    assert Reader(b'"17-Jul-1996 02:44:25 -0700"').date_time() == datetime(
        1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=-7)))
    assert Reader(b'" 7-Jul-1996 02:44:25 +0530"').date_time().utcoffset() == timedelta(hours=5, minutes=30)
    for bad in (b'"17-Jul-1996 02:44:25"', b'"17-Jul-1996 2:44:25 +0000"', b'"17-Jul-1996 02:60:00 +0000"',
                b'"17-Jul-1996 02:44:25 +0060"', b"17-Jul-1996 02:44:25 +0000", b'"17-Jul-1996  02:44:25 +0000"'):
        with pytest.raises(ParseError):
            Reader(bad).date_time()


def test_flags() -> None:
    assert Reader(b"(\\SEEN \\answered $Junk foo \\Seen)").flag_list() == ("\\Seen", "\\Answered", "$Junk", "foo")
    assert Reader(b"()").flag_list() == ()
    for bad in (b"(\\Recent)", b"(\\*)", b"(\\)", b"(a b", b"( a)", b"(a  b)", b"(a]b)", b"(%)"):
        with pytest.raises(ParseError):
            Reader(bad).flag_list()
