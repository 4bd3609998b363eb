"""IMAP response encoder (RFC 9051 7 and 9): status responses, continuation requests, and one
generic encoder for nested IMAP data.

Value forms: ``None`` → NIL, ``int`` → number, ``str``/``bytes`` → quoted string when safe, else a
literal (8-bit text is quoted only when UTF8=ACCEPT/IMAP4rev2 is in effect), :class:`Literal8` →
``~{n}`` (RFC 3516 BINARY), ``Atom`` → written as is, ``list``/``tuple`` → parenthesised list,
``Run`` → its values back to back (the bodies of a multipart, the addresses of an envelope).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from hardmail.imap.values import Atom, Run
from hardmail.proto.imap.commands import BadCommand, LineTooLong, LiteralTooLarge
from hardmail.proto.imap.mutf7 import mutf7_decode, mutf7_encode
from hardmail.proto.imap.sequence import compress

__all__ = ["Atom", "Literal8", "Run", "continuation", "encode_value", "fetch_response", "mutf7_decode",
           "mutf7_encode", "refusal", "tagged", "untagged"]

MAX_QUOTED = 1000  # longer strings go as literals
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
CRLF = b"\r\n"


class Literal8(bytes):
    """Bytes sent as a literal8 ``~{n}`` (RFC 3516 4.2: BINARY[...] data that may hold NUL)."""


def _text(text: str) -> bytes:
    """resp-text: one line, never empty (RFC 9051 9 text = 1*TEXT-CHAR)."""
    clean = " ".join(text.replace("\r", " ").replace("\n", " ").replace("\x00", " ").split())
    return (clean or "done").encode("utf-8")


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """``tag SP (OK/NO/BAD) SP ["[" resp-text-code "]" SP] text CRLF``."""
    head = f"{tag} {status} " + (f"[{code}] " if code else "")
    return head.encode("utf-8") + _text(text) + CRLF


def untagged(text: str | bytes) -> bytes:
    """``* text CRLF`` (``text`` already encoded, e.g. ``EXISTS`` lines)."""
    body = text if isinstance(text, bytes) else text.encode("utf-8")
    return b"* " + body + CRLF


def untagged_status(status: str, text: str, code: str | None = None) -> bytes:
    """``* OK [code] text`` / ``* NO`` / ``* BAD`` / ``* BYE`` / ``* PREAUTH``."""
    return tagged("*", status, text, code)


def continuation(text: str = "") -> bytes:
    """``+ text CRLF`` (RFC 9051 7.5); a SASL challenge passes its base64 as ``text``."""
    return b"+ " + text.encode("ascii", "replace") + CRLF if text else b"+ " + CRLF


# ----- values --------------------------------------------------------------------------------
def encode_value(value: Any, *, utf8: bool = False) -> bytes:
    out: list[bytes] = []
    _encode(value, out, utf8)
    return b"".join(out)


def _encode(value: Any, out: list[bytes], utf8: bool) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, Atom):
        out.append(value.encode("utf-8"))
    elif isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    elif isinstance(value, int):
        out.append(str(value).encode("ascii"))
    elif isinstance(value, Literal8):
        out.append(b"~{%d}\r\n" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str | bytes):
        out.append(string(value, utf8=utf8))
    elif isinstance(value, Run):
        for item in value:
            _encode(item, out, utf8)
    elif isinstance(value, list | tuple):
        out.append(b"(")
        for index, item in enumerate(value):
            if index:
                out.append(b" ")
            _encode(item, out, utf8)
        out.append(b")")
    else:
        raise TypeError(f"not an IMAP value: {type(value).__name__}")


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A quoted string when safe (no CR/LF/NUL, short, 8-bit only with ``utf8``), else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) < MAX_QUOTED and not any(b in raw for b in (b"\r", b"\n", b"\x00")) and (
            raw.isascii() or (utf8 and _is_utf8(raw))):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(raw) + raw


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_ATOM_CHARS = re.compile(r'[^(){ \x00-\x1f\x7f%*"\\\]\x80-\U0010ffff]+')


def astring(value: str, *, utf8: bool = False) -> bytes:
    """RFC 9051 9 astring: an atom when every character is an ATOM-CHAR (``INBOX``, ``Sent``), else
    a string; ``NIL`` is quoted so no parser takes it for nil, ``]`` so none takes it for a code's end."""
    if _ATOM_CHARS.fullmatch(value) and value.upper() != "NIL":
        return value.encode("ascii")
    return string(value, utf8=utf8)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as sent to the client (an astring, as Dovecot writes it): modified UTF-7
    unless UTF-8 is in effect (RFC 9051 5.1)."""
    return astring(name if utf8 else mutf7_encode(name), utf8=utf8)


def flags(values: Iterable[str]) -> list[Atom]:
    return [Atom(flag) for flag in values]


def date_time(moment: datetime) -> str:
    """RFC 9051 9 date-time text: ``dd-Mon-yyyy hh:mm:ss +zzzz`` (day as 2DIGIT, as Dovecot writes it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} "
            f"{moment:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}")


# ----- responses -----------------------------------------------------------------------------
def fetch_response(seq: int, items: Sequence[tuple[str, Any]], *, utf8: bool = False) -> bytes:
    """``* seq FETCH (NAME value ...)``; names as ``FetchItem.response_name()`` gives them."""
    out = [b"* %d FETCH (" % seq]
    for index, (name, value) in enumerate(items):
        if index:
            out.append(b" ")
        out.append(name.encode("ascii") + b" ")
        _encode(value, out, utf8)
    out.append(b")\r\n")
    return b"".join(out)


def search_response(numbers: Iterable[int], modseq: int | None = None) -> bytes:
    """``* SEARCH 2 3 5`` (RFC 9051 7.3.5 rev1 form) with RFC 7162 3.1.5 ``(MODSEQ n)``."""
    text = "SEARCH" + "".join(f" {n}" for n in numbers)
    if modseq is not None:
        text += f" (MODSEQ {modseq})"
    return untagged(text)


def esearch_response(tag: str | None, uid: bool, results: Sequence[tuple[str, Any]]) -> bytes:
    """RFC 4731 3.2: ``* ESEARCH (TAG "a1") UID MIN 2 COUNT 3 ALL 2:4``; an ``ALL`` value that is a
    list of numbers is written as a sequence set; MODSEQ as a number."""
    out = b"* ESEARCH"
    if tag is not None:
        out += b" (TAG " + string(tag) + b")"
    if uid:
        out += b" UID"
    for name, value in results:
        if name == "ALL" and not isinstance(value, str):
            value = Atom(compress(value))
        out += b" " + name.encode("ascii") + b" " + encode_value(value)
    return out + CRLF


def list_response(attributes: Iterable[str], delimiter: str | None, name: str, *, utf8: bool = False,
                  extended: Sequence[tuple[str, Any]] = (), command: str = "LIST") -> bytes:
    """RFC 9051 7.3.1 / RFC 5258 3.5: ``* LIST (\\HasNoChildren) "/" "INBOX" ("CHILDINFO" ("SUBSCRIBED"))``."""
    out = b"* " + command.encode("ascii") + b" " + encode_value(flags(attributes)) + b" "
    out += encode_value(delimiter) + b" " + mailbox(name, utf8=utf8)
    if extended:
        body: list[bytes] = []
        for key, value in extended:  # mbox-list-extended-item = tag SP tagged-ext-val
            body.append(string(key) + b" " + encode_value(value, utf8=utf8))
        out += b" (" + b" ".join(body) + b")"
    return out + CRLF


def status_response(name: str, items: Sequence[tuple[str, int]], *, utf8: bool = False) -> bytes:
    """RFC 9051 7.3.2: ``* STATUS "name" (MESSAGES 3 UIDNEXT 7)``."""
    body = " ".join(f"{key} {value}" for key, value in items).encode("ascii")
    return b"* STATUS " + mailbox(name, utf8=utf8) + b" (" + body + b")" + CRLF


def vanished_response(uids: Iterable[int], *, earlier: bool = False) -> bytes:
    """RFC 7162 3.2.10: ``* VANISHED (EARLIER) 1:3,7``."""
    return untagged(("VANISHED (EARLIER) " if earlier else "VANISHED ") + compress(list(uids)))


def capability_response(caps: Iterable[str]) -> bytes:
    return untagged("CAPABILITY " + " ".join(caps))


def enabled_response(caps: Iterable[str]) -> bytes:
    """RFC 5161 3.2: ``* ENABLED`` followed by what this ENABLE turned on (maybe nothing)."""
    return untagged(" ".join(["ENABLED", *caps]))


def flags_response(values: Iterable[str]) -> bytes:
    return b"* FLAGS " + encode_value(flags(values)) + CRLF


def id_response(params: Sequence[tuple[str, str | None]] | None) -> bytes:
    """RFC 2971 3.2: ``* ID ("name" "hardmail")`` or ``* ID NIL``."""
    if not params:
        return untagged("ID NIL")
    values: list[Any] = [v for pair in params for v in pair]
    return b"* ID " + encode_value(values) + CRLF


def refusal(event: BadCommand | LiteralTooLarge | LineTooLong) -> bytes:
    """The proposed answer to a refused command: ``tag BAD [code] text`` (``* BAD`` without a tag)."""
    return tagged(event.tag, event.status, event.text, event.code)
