"""The text of a message as SEARCH reads it (RFC 9051 6.4.4): header values with their RFC 2047
encoded words decoded (any charset Python knows; a word that cannot be decoded stays as it is),
8-bit header text read as UTF-8 (RFC 6532, else Latin-1), the text parts of the body decoded
(transfer encoding, then charset; HTML roughly stripped to its text, where Dovecot searches the
raw HTML), and for TEXT the headers of every part and enclosed message too (as Dovecot). The
decoded body is bounded (MAX_BODY_TEXT characters), so is the work.
Matching is case-insensitive by Unicode case folding (:func:`fold`, :func:`contains`)."""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import re
import unicodedata
from dataclasses import dataclass, field

from hardmail.mime.headers import HeaderBlock
from hardmail.mime.sections import UnknownCte, decode_body
from hardmail.mime.structure import Part

MAX_BODY_TEXT = 4 * 1024 * 1024  # characters of decoded body text searched per message
MAX_HEADER_TEXT = 256 * 1024
# RFC 2047 2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(rb"[ \t\r\n]+")
_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_BLOCK_TAGS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6"})
_TAG_NAME = re.compile(r"/?([a-zA-Z][a-zA-Z0-9]*)")
_SPACES = re.compile(r"[ \t\r\n]+")


def bytes_text(raw: bytes) -> str:
    """8-bit text outside encoded words: UTF-8 (RFC 6532), else Latin-1 (old 8-bit mail)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_word(charset: bytes, kind: bytes, text: bytes) -> str | None:
    name = charset.split(b"*", 1)[0].decode("ascii", "replace")  # RFC 2231 5: charset*language
    try:
        codecs.lookup(name)
        if kind in b"Bb":
            raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        else:
            raw = _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))
        return raw.decode(name, "replace")
    except (LookupError, binascii.Error, ValueError):
        return None


def decode_header(raw: bytes) -> str:
    """A header value (unfolded) as text: encoded words decoded, white space between two
    adjacent encoded words dropped (RFC 2047 6.2), undecodable ones kept as written."""
    out: list[str] = []
    at, previous_word_end = 0, -1
    for found in _ENCODED_WORD.finditer(raw[:MAX_HEADER_TEXT]):
        decoded = _decode_word(found.group(1), found.group(2), found.group(3))
        gap = raw[at:found.start()]
        if decoded is None:
            out.append(bytes_text(gap + found.group()))
            previous_word_end = -1
        else:
            if not (previous_word_end == at and _BETWEEN_WORDS.fullmatch(gap)):
                out.append(bytes_text(gap))
            out.append(decoded)
            previous_word_end = found.end()
        at = found.end()
    out.append(bytes_text(raw[at:MAX_HEADER_TEXT]))
    return "".join(out)


def _tag_end(markup: str, at: int, lower: str) -> tuple[int, str]:
    """Where the markup item at ``at`` ("<") ends, and the text it stands for ("" or a line end).
    Scripts, styles and comments go with their content; an unclosed one ends the text."""
    if markup.startswith("<!--", at):
        end = markup.find("-->", at + 4)
        return (len(markup) if end < 0 else end + 3), " "
    name_match = _TAG_NAME.match(markup, at + 1)
    name = name_match.group(1).lower() if name_match else ""
    end = markup.find(">", at + 1)
    if end < 0:
        return len(markup), " "
    if name in ("script", "style") and not markup.startswith("/", at + 1):
        close = lower.find("</" + name, end)
        if close < 0:
            return len(markup), " "
        end = markup.find(">", close)
        return (len(markup) if end < 0 else end + 1), " "
    return end + 1, "\n" if name in _BLOCK_TAGS else " "


def html_text(markup: str) -> str:
    """HTML roughly as text: scripts, styles, comments and tags removed, entities decoded. One
    pass (each search starts where the last one ended)."""
    lower = markup.lower()
    pieces, at = [], 0
    while True:
        start = markup.find("<", at)
        if start < 0:
            pieces.append(markup[at:])
            break
        pieces.append(markup[at:start])
        at, replacement = _tag_end(markup, start, lower)
        pieces.append(replacement)
    return html.unescape("".join(pieces))


def fold(text: str) -> str:
    """Text for case-insensitive matching: NFC, Unicode case folding, white space runs as one
    space (a search string and a folded line then meet however the text was wrapped)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text).casefold())


def contains(haystack: str, needle: str) -> bool:
    """RFC 9051 6.4.4: ``needle`` is a substring of ``haystack``, case-insensitively."""
    return fold(needle) in fold(haystack)


_ASCII_NAMES = frozenset({"", "us-ascii", "ascii", "us", "ansi_x3.4-1968"})


def _charset_decode(raw: bytes, charset: str) -> str:
    """``raw`` in ``charset``; no charset, US-ASCII or an unknown one: UTF-8 if it is (8-bit text
    often comes without its charset), else Latin-1."""
    if charset.lower() in _ASCII_NAMES:
        return bytes_text(raw)
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return bytes_text(raw)


@dataclass
class MessageText:
    """The searchable text of one message (``data``, its tree ``root``); decoded on demand."""

    data: bytes
    root: Part
    _body: str | None = field(default=None, repr=False)

    @property
    def headers(self) -> HeaderBlock:
        return self.root.header

    def header(self, name: str) -> list[str]:
        """The decoded, unfolded values of the fields called ``name`` (any case)."""
        block = self.root.header
        return [decode_header(block.raw_value(f)) for f in block.named(name.lower())]

    def has_header(self, name: str) -> bool:
        return bool(self.root.header.named(name.lower()))

    def headers_text(self) -> str:
        """Every header field as ``Name: decoded value`` lines: the message's, then those of its
        parts and of the messages it encloses (TEXT searches them all, as Dovecot does)."""
        return "\n".join(_block_text(part.header) for part in self.root.walk())

    def body_text(self) -> str:
        """The decoded text of the body: its text parts, those of enclosed messages included
        (not the headers of its parts, as Dovecot reads BODY)."""
        if self._body is None:
            self._body = _body_text(self.data, self.root)
        return self._body

    def text(self) -> str:
        """RFC 9051 6.4.4 TEXT: the headers and the body."""
        return self.headers_text() + "\n" + self.body_text()


def _block_text(block: HeaderBlock) -> str:
    lines = []
    for item in block.fields:
        name = block.data[item.start:item.colon].decode("ascii", "replace").strip()
        lines.append(f"{name}: {decode_header(block.raw_value(item))}")
    return "\n".join(lines)


def _leaf_text(data: bytes, part: Part) -> str:
    # no more of a part is decoded than can make MAX_BODY_TEXT characters (4 bytes a character)
    end = min(part.body_end, part.body_start + 4 * 3 * MAX_BODY_TEXT)  # QP: 3 bytes a byte
    try:
        raw = decode_body(data[part.body_start:end], part.encoding)
    except UnknownCte:
        return ""
    charset = (part.content_type.decoded("charset") or "").strip()
    text = _charset_decode(raw, charset)
    return html_text(text) if part.subtype == "html" else text


def _body_text(data: bytes, root: Part) -> str:
    pieces: list[str] = []
    size = 0
    for part in root.walk():
        if part.is_multipart or part.message is not None or part.maintype != "text":
            continue
        piece = _leaf_text(data, part)
        pieces.append(piece)
        size += len(piece)
        if size > MAX_BODY_TEXT:
            break
    return "\n".join(pieces)[:MAX_BODY_TEXT]
