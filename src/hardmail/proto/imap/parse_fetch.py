"""FETCH attributes and modifiers, STORE arguments (RFC 9051 6.4.5, 6.4.6, RFC 3516 BINARY,
RFC 7162 3.1.3 UNCHANGEDSINCE, 3.1.4 CHANGEDSINCE, 3.2.6 VANISHED)."""

from __future__ import annotations

import re
from typing import Literal

from hardmail.proto.imap.commands import FetchItem, Section
from hardmail.proto.imap.lexer import ParseError, Reader, decode_text

_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SIMPLE = ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
           "RFC822", "RFC822.HEADER", "RFC822.TEXT")
_MACROS = {
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SECTIONED = {"BODY": ("BODY[]", False), "BODY.PEEK": ("BODY[]", True), "BINARY": ("BINARY[]", False),
              "BINARY.PEEK": ("BINARY[]", True), "BINARY.SIZE": ("BINARY.SIZE[]", False)}
_SECTION_TEXT = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME")
_PART = re.compile(rb"[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,8})*")
MAX_ITEMS = 256


def fetch_items(r: Reader) -> tuple[FetchItem, ...]:
    """``"ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"``."""
    if r.peek() == b"(":
        r.open()
        items = [fetch_att(r)]
        while not r.take(b")"):
            r.sp()
            items.append(fetch_att(r))
            if len(items) > MAX_ITEMS:
                raise ParseError("Too many fetch attributes")
        return tuple(dict.fromkeys(items))
    start = r.pos
    name = _name(r)
    if name in _MACROS:
        return tuple(FetchItem(n) for n in _MACROS[name])
    r.pos = start
    return (fetch_att(r),)


def _name(r: Reader) -> str:
    match = _NAME.match(r.data, r.pos)
    if match is None:
        raise ParseError("Expected a fetch attribute")
    r.pos = match.end()
    return match.group(0).decode("ascii").upper()


def fetch_att(r: Reader) -> FetchItem:
    name = _name(r)
    if r.peek() == b"[" and name in _SECTIONED:
        kind, peek = _SECTIONED[name]
        section = _binary_section(r) if kind != "BODY[]" else _section(r)
        partial = _partial(r) if kind != "BINARY.SIZE[]" else None
        return FetchItem(kind, section, partial, peek)
    if name in _SECTIONED and name != "BODY":
        raise ParseError(f"{name} needs a section")
    if name not in _SIMPLE:
        raise ParseError(f"Unknown fetch attribute {name}")
    return FetchItem(name)


def _section(r: Reader) -> Section:
    """``"[" [section-spec] "]"``."""
    r.expect(b"[")
    if r.take(b"]"):
        return Section()
    part: tuple[int, ...] = ()
    match = _PART.match(r.data, r.pos)
    if match is not None:
        r.pos = match.end()
        part = tuple(int(n) for n in match.group(0).split(b"."))
        if r.take(b"]"):
            return Section(part)
        r.expect(b".", "'.' or ']' in the section")
    text = _name(r)
    if text not in _SECTION_TEXT or (text == "MIME" and not part):
        raise ParseError(f"Invalid section {text}")
    fields: tuple[str, ...] = ()
    if text.startswith("HEADER.FIELDS"):
        fields = _header_list(r)
    r.expect(b"]", "']' closing the section")
    return Section(part, text, fields)


def _header_list(r: Reader) -> tuple[str, ...]:
    r.sp()
    r.open()
    names = [_field_name(r)]
    while not r.take(b")"):
        r.sp()
        names.append(_field_name(r))
    return tuple(dict.fromkeys(names))


def _field_name(r: Reader) -> str:
    """RFC 9051 9: header-fld-name = astring; a name no header can have ("a b") just matches none."""
    return decode_text(r.astring("a header field name"), "header field name").upper()


def _binary_section(r: Reader) -> Section:
    """``section-binary = "[" [section-part] "]"`` (RFC 3516 4.1)."""
    r.expect(b"[")
    if r.take(b"]"):
        return Section()
    match = _PART.match(r.data, r.pos)
    if match is None:
        raise ParseError("Invalid BINARY section")
    r.pos = match.end()
    r.expect(b"]", "']' closing the section")
    return Section(tuple(int(n) for n in match.group(0).split(b".")))


def _partial(r: Reader) -> tuple[int, int] | None:
    """``"<" number64 "." nz-number64 ">"``."""
    if not r.take(b"<"):
        return None
    origin = r.number64(what="a partial origin")
    r.expect(b".", "'.' in the partial range")
    length = r.number64(nonzero=True, what="a partial length")
    r.expect(b">", "'>' closing the partial range")
    return origin, length


def fetch_modifiers(r: Reader) -> tuple[int | None, bool]:
    """RFC 7162 3.1.4.1 / 3.2.6: ``SP "(" fetch-modifier *(SP fetch-modifier) ")"``."""
    changedsince: int | None = None
    vanished = False
    if r.at_end():
        return None, False
    r.sp()
    r.open()
    while True:
        name = r.keyword("a FETCH modifier")
        if name == "CHANGEDSINCE" and changedsince is None:
            r.sp()  # mod-sequence-value is 1 or more; 0 is taken as Dovecot does (everything changed)
            changedsince = r.number64(what="a mod-sequence value")
        elif name == "VANISHED" and not vanished:
            vanished = True
        else:
            raise ParseError(f"Invalid FETCH modifier {name}")
        if r.take(b")"):
            return changedsince, vanished
        r.sp()


StoreMode = Literal["set", "add", "remove"]


def store_args(r: Reader) -> tuple[int | None, StoreMode, bool, tuple[str, ...]]:
    """``[SP "(" UNCHANGEDSINCE n ")"] SP store-att-flags`` (the set was read before)."""
    r.sp()
    unchangedsince: int | None = None
    if r.take(b"("):
        if r.keyword("a STORE modifier") != "UNCHANGEDSINCE":
            raise ParseError("Invalid STORE modifier")
        r.sp()
        unchangedsince = r.number64(what="a mod-sequence value")
        r.close()
        r.sp()
    mode: StoreMode = "add" if r.take(b"+") else "remove" if r.take(b"-") else "set"
    name = _name(r)
    if name not in ("FLAGS", "FLAGS.SILENT"):
        raise ParseError("Expected FLAGS or FLAGS.SILENT")
    r.sp()
    if r.peek() == b"(":
        flags = r.flag_list()
    else:
        collected = [r.flag()]
        while not r.at_end():
            r.sp()
            collected.append(r.flag())
        flags = tuple(dict.fromkeys(collected))
    return unchangedsince, mode, name.endswith(".SILENT"), flags
