"""Putting a few lines of plain text at the top of a message's visible text, without re-encoding
the message: where to insert and what bytes to insert.

The visible text is the body of a ``text/plain`` message, or of the first ``text/plain`` part
reached through the first parts of ``multipart/mixed``, ``multipart/alternative`` and
``multipart/related`` (the tree read by :func:`hardmail.mime.structure.parse_message`, the one
MIME parser). The lines are written in the part's own Content-Transfer-Encoding (RFC 2045 6):
7bit, 8bit and binary as they are, quoted-printable escaped (RFC 2045 6.7), base64 as a base64
run of whole 3-byte groups, so that it decodes followed by the original base64 text (RFC 2045
6.8: the decoder reads 4-character groups across lines; one or two more empty lines make the
whole 3-byte groups). The lines are printable ASCII and are
only inserted when the part's charset writes ASCII as ASCII (not UTF-16, UTF-32 or EBCDIC).

Nothing is inserted (None) when the text cannot be changed safely: an attachment, a signed or
encrypted multipart (RFC 1847: the signature covers the bytes), an unknown encoding or charset,
a first text part that is HTML, or a part whose header block does not end within the bytes given
(the caller gives the head and the first bytes of the body only: see :func:`insertion`).
"""

from __future__ import annotations

import base64
import codecs

from hardmail.mime.structure import Part, parse_message

DESCEND = frozenset({"multipart/mixed", "multipart/alternative", "multipart/related"})
MAX_DESCENT = 8  # first parts followed this deep
_PLAIN = frozenset({"7bit", "8bit", "binary"})
_PROBE = "Aaz09 .,:;()=?-_/@'\"\r\n"


def _ascii_charset(part: Part) -> bool:
    """Whether the part's charset (us-ascii when absent, RFC 2045 5.2) writes ASCII as ASCII."""
    name = (part.content_type.decoded("charset") or "us-ascii").strip()
    try:
        codecs.lookup(name)
        return _PROBE.encode(name) == _PROBE.encode("ascii")
    except (LookupError, UnicodeError, ValueError):
        return False


def _header_ended(data: bytes, part: Part) -> bool:
    """The part's header block ended with its empty line inside ``data``."""
    return data[part.header_end:part.body_start] in (b"\r\n", b"\n") and part.body_start <= len(data)


def visible_text_part(data: bytes) -> Part | None:
    """The part whose body is the visible text of the message (head + start of body) ``data``."""
    part = parse_message(data)
    for _ in range(MAX_DESCENT):
        if part.content_type.value not in DESCEND or not part.children:
            break
        part = part.children[0]
    disposition = part.disposition
    if part.content_type.value != "text/plain" or (disposition is not None and disposition.value == "attachment"):
        return None
    if part.start and not _header_ended(data, part):  # the root's header block is complete
        return None
    return part if _ascii_charset(part) else None


def encoded_lines(lines: list[str], encoding: str) -> bytes | None:
    """``lines`` (printable ASCII) in the transfer encoding ``encoding``, CRLF after each."""
    text = "".join(f"{line}\r\n" for line in lines)
    if not text.isascii():
        return None
    if encoding in _PLAIN:
        return text.encode("ascii")
    if encoding == "quoted-printable":
        return text.replace("=", "=3D").encode("ascii")
    if encoding == "base64":
        # whole 3-byte groups, so no "=" padding ends the run: one or two more empty lines
        raw = (text + ("", "\r\n\r\n", "\r\n")[-len(text) % 3]).encode("ascii")
        encoded = base64.b64encode(raw)
        return b"".join(encoded[i:i + 76] + b"\r\n" for i in range(0, len(encoded), 76))
    return None


def insertion(head: bytes, body_start: bytes, lines: list[str]) -> tuple[int, bytes] | None:
    """(offset in ``body_start``, bytes to insert there) to put ``lines`` at the top of the
    visible text, or None. ``head`` is the message's header block with its empty line;
    ``body_start`` the body or its first bytes: the visible text part must start within it."""
    data = head + body_start
    part = visible_text_part(data)
    if part is None or part.body_start < len(head):
        return None
    inserted = encoded_lines(lines, part.encoding)
    return None if inserted is None else (part.body_start - len(head), inserted)
