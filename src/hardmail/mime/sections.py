"""BODY[section] and BINARY[section] contents (RFC 9051 6.4.5, RFC 3501 6.4.5, RFC 3516 4.2) from
a message and its MIME tree (:mod:`hardmail.mime.structure`): "", HEADER, HEADER.FIELDS (.NOT),
TEXT, MIME, part numbers (message/rfc822 parts nest: ``2.HEADER``, ``2.1``; a message that is not
multipart has one part, 1, its body), the partial ``<origin.count>``, and BINARY's decoded content
(base64, quoted-printable; 7bit, 8bit and binary as they are; any other encoding raises
:class:`UnknownCte`, which the server answers with ``NO [UNKNOWN-CTE]``).

A section that is one range of the message is cut from it once (the partial applied first); only
HEADER.FIELDS and BINARY build new bytes. Linear in the section's size.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from typing import Protocol

from hardmail.mime.structure import Part

IDENTITY_ENCODINGS = frozenset({"7bit", "8bit", "binary"})
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_QP_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n)")


class SectionSpec(Protocol):
    """What a parsed section names (``proto.imap.commands.Section`` has this shape)."""

    @property
    def part(self) -> tuple[int, ...]: ...
    @property
    def text(self) -> str | None: ...
    @property
    def fields(self) -> tuple[str, ...]: ...


class SectionError(ValueError):
    """The section names no part of this message (fetch_section then gives an empty string)."""


class UnknownCte(SectionError):
    """BINARY of a part whose Content-Transfer-Encoding cannot be decoded (RFC 3516 4.3)."""


def find_part(root: Part, path: Sequence[int]) -> Part:
    """The part numbered ``path`` (RFC 9051 6.4.5); the root for an empty path."""
    container, is_message, part = root, True, root
    for number in path:
        if container.is_multipart and 1 <= number <= len(container.children):
            part = container.children[number - 1]
        elif not container.is_multipart and is_message and number == 1:
            part = container  # a message that is not multipart: part 1 is its body
        else:
            raise SectionError("no such part")
        is_message = part.message is not None
        container = part.message if part.message is not None else part
    return part


def _message_of(root: Part, path: Sequence[int]) -> Part:
    """The message that HEADER/TEXT of ``path`` apply to: the root, or a message/rfc822 part's."""
    if not path:
        return root
    part = find_part(root, path)
    if part.message is None:
        raise SectionError("not a message/rfc822 part")
    return part.message


def section_range(root: Part, section: SectionSpec) -> tuple[int, int]:
    """The (start, end) offsets of a section that is one range of the message (all but
    HEADER.FIELDS)."""
    text = (section.text or "").upper()
    if text == "HEADER":
        message = _message_of(root, section.part)
        return message.start, message.body_start
    if text == "TEXT":
        message = _message_of(root, section.part)
        return message.body_start, message.body_end
    if text == "MIME":
        if not section.part:
            raise SectionError("MIME needs a part number")
        part = find_part(root, section.part)
        return part.start, part.body_start
    if text:
        raise SectionError(f"not a range section: {text}")
    if not section.part:
        return root.start, root.body_end
    part = find_part(root, section.part)
    return part.body_start, part.body_end


def _header_fields(data: bytes, root: Part, section: SectionSpec, exclude: bool) -> bytes:
    """RFC 9051 6.4.5 HEADER.FIELDS: the fields named, in message order, each ending in a line
    end, then the empty line. HEADER.FIELDS.NOT: the header as it is without the fields named
    (lines that are no field stay), and its empty line if it has one (both as Dovecot sends)."""
    message = _message_of(root, section.part)
    names = {name.lower() for name in section.fields}
    block = message.header
    if not exclude:
        kept = [block.raw(f) for f in block.fields if f.name in names]
        return b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in kept) + b"\r\n"
    return _header_without(data, message, names) + data[message.header_end:message.body_start]


def _header_without(data: bytes, part: Part, names: set[str]) -> bytes:
    """The part's header lines as they are, without the fields called ``names`` (lines that are
    no field stay) and without the empty line."""
    pieces, at = [], part.start
    for item in part.header.fields:
        if item.name in names:
            pieces.append(data[at:part.start + item.start])
            at = part.start + item.end
    pieces.append(data[at:part.header_end])
    return b"".join(pieces)


def _cut(value: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return value
    origin, count = partial
    return value[origin:origin + count]


def fetch_section(data: bytes, root: Part, section: SectionSpec,
                  partial: tuple[int, int] | None = None) -> bytes:
    """BODY[section]<partial> of the message ``data`` whose tree is ``root``. A section that does
    not exist is empty (as Dovecot sends it)."""
    text = (section.text or "").upper()
    try:
        if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            return _cut(_header_fields(data, root, section, text.endswith(".NOT")), partial)
        start, end = section_range(root, section)
    except SectionError:
        return b""
    if partial is not None:
        start = min(end, start + partial[0])
        end = min(end, start + partial[1])
    return data[start:end]


def decode_base64(value: bytes) -> bytes:
    """Lenient base64 (RFC 2045 6.8: characters outside the alphabet are ignored; "=" ends the
    data); an unpadded or cut last group still gives its bytes."""
    clean = _BASE64_JUNK.sub(b"", value.split(b"=", 1)[0])
    usable = len(clean) - len(clean) % 4
    decoded = binascii.a2b_base64(clean[:usable]) if usable else b""
    tail = clean[usable:]
    if len(tail) >= 2:
        decoded += binascii.a2b_base64(tail + b"=" * (4 - len(tail)))
    return decoded


def decode_quoted_printable(value: bytes) -> bytes:
    """Quoted-printable (RFC 2045 6.7), trailing white space of lines removed, lenient."""
    return binascii.a2b_qp(_QP_TRAILING_SPACE.sub(b"", value))


def decode_body(value: bytes, encoding: str) -> bytes:
    """``value`` with its Content-Transfer-Encoding ``encoding`` (lower-case) undone."""
    if encoding in IDENTITY_ENCODINGS:
        return value
    if encoding == "base64":
        return decode_base64(value)
    if encoding == "quoted-printable":
        return decode_quoted_printable(value)
    raise UnknownCte(f"unknown Content-Transfer-Encoding {encoding[:40]!r}")


def _binary_header(data: bytes, part: Part) -> bytes:
    """The part's header for BINARY of an enclosing part: as it is when its content is not
    encoded, else without its Content-Transfer-Encoding field and with
    ``Content-Transfer-Encoding: binary`` last (as Dovecot writes it)."""
    if (part.is_multipart or part.message is not None or part.encoding in IDENTITY_ENCODINGS
            or (part.body_start == part.body_end and part.encoding == "base64")):  # as Dovecot does
        return data[part.start:part.body_start]
    kept = _header_without(data, part, {"content-transfer-encoding"})
    if kept and not kept.endswith(b"\n"):
        kept += b"\r\n"
    separator = data[part.header_end:part.body_start] or b"\r\n"
    return kept + b"Content-Transfer-Encoding: binary\r\n" + separator


def _binary_content(data: bytes, part: Part) -> bytes:
    """The part's content with every transfer encoding in it undone: a leaf's body decoded; a
    multipart's or a message's body with each part below it rewritten that way (RFC 3516 4.2)."""
    below = part.children if part.is_multipart else [part.message] if part.message is not None else None
    if below is None:
        return decode_body(data[part.body_start:part.body_end], part.encoding)
    pieces, at = [], part.body_start
    for child in below:
        if child is None:
            continue
        pieces += [data[at:child.start], _binary_header(data, child), _binary_content(data, child)]
        at = child.body_end
    pieces.append(data[at:part.body_end])
    return b"".join(pieces)


def binary_section(data: bytes, root: Part, path: Sequence[int],
                   partial: tuple[int, int] | None = None) -> bytes:
    """BINARY[path]<partial> (RFC 3516 4.2): the part's content decoded (the whole message for
    the empty path), parts inside it decoded too. UnknownCte when an encoding in it is unknown;
    a part that does not exist is empty."""
    try:
        part = find_part(root, path) if path else root
    except SectionError:
        return b""
    if not path:
        return _cut(_binary_header(data, root) + _binary_content(data, root), partial)
    return _cut(_binary_content(data, part), partial)


def binary_size(data: bytes, root: Part, path: Sequence[int]) -> int:
    """BINARY.SIZE[path] (RFC 3516 4.2): the size of BINARY[path]."""
    try:
        part = find_part(root, path) if path else root
    except SectionError:
        return 0
    if path and not part.is_multipart and part.message is None and part.encoding in IDENTITY_ENCODINGS:
        return part.body_size
    return len(binary_section(data, root, path))
