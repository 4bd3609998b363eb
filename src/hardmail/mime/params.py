"""MIME header values with parameters (RFC 2045 5.1 Content-Type, RFC 2183 Content-Disposition):
the leading value, the parameters (quoted strings, comments, RFC 2231 continuations and charsets),
and the token/quoted-string lists of Content-Language (RFC 3282). The one parser of this format.

Lenient like Dovecot: a parameter without a value is skipped, 8-bit bytes are kept as they are,
and whatever cannot be read ends the parameter list instead of raising. One pass over the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

# RFC 2045 5.1: tspecials; a token is any printable character that is none of these
_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')
_WSP = frozenset(b" \t\r\n")
_SECTION = re.compile(r"^(.*?)\*(\d{1,3})(\*?)$")
MAX_PARAMS = 64


def _skip_cfws(data: bytes, at: int) -> int:
    """Past white space and (nested) comments (RFC 5322 3.2.2)."""
    size = len(data)
    while at < size:
        char = data[at]
        if char in _WSP:
            at += 1
        elif char == 0x28:  # "("
            depth = 0
            while at < size:
                char = data[at]
                if char == 0x5C:
                    at += 1
                elif char == 0x28:
                    depth += 1
                elif char == 0x29:
                    depth -= 1
                    if depth == 0:
                        at += 1
                        break
                at += 1
        else:
            break
    return at


def _token(data: bytes, at: int) -> tuple[bytes, int]:
    start, size = at, len(data)
    while at < size and 0x20 < data[at] < 0x7F and data[at] not in _TSPECIALS:
        at += 1
    return data[start:at], at


def _quoted(data: bytes, at: int) -> tuple[bytes, int]:
    """The content of the quoted string at ``at`` (which is '"'), escapes removed, folds undone;
    the offset after it, or -1 when it is not closed."""
    out = bytearray()
    at += 1
    size = len(data)
    while at < size and data[at] != 0x22:
        if data[at] == 0x5C and at + 1 < size:
            at += 1
        if data[at] not in (0x0D, 0x0A):
            out.append(data[at])
        at += 1
    return bytes(out), (at + 1 if at < size else -1)


def _value(data: bytes, at: int) -> tuple[bytes, int]:
    """A parameter value: a quoted string or a token (leniently: up to ';' or white space)."""
    if at < len(data) and data[at] == 0x22:
        return _quoted(data, at)
    start, size = at, len(data)
    while at < size and data[at] not in _WSP and data[at] != 0x3B:
        at += 1
    return data[start:at], at


@dataclass(frozen=True, slots=True)
class ParamValue:
    """``type/subtype; a=b`` or ``attachment; filename=x``, as IMAP shows it."""

    value: str  # "text/plain", "attachment": lower-cased, "" when missing
    # names as written, in order, then the RFC 2231 continuations joined (as Dovecot orders
    # them); an extended (charset) value is kept encoded under "name*" (``utf-8''%C3%A9.pdf``)
    params: tuple[tuple[str, bytes], ...]
    original: tuple[str, str] = ("", "")  # the type and subtype as written (IMAP shows these)

    def param(self, name: str) -> bytes | None:
        """The first parameter called ``name`` (lower-case), whatever its case."""
        for key, value in self.params:
            if key.lower() == name:
                return value
        return None

    def decoded(self, name: str) -> str | None:
        """The parameter's text: RFC 2231 charset and percent-encoding undone, else UTF-8."""
        extended = self.param(name + "*")
        if extended is not None:
            return decode_rfc2231(extended)
        plain = self.param(name)
        return None if plain is None else plain.decode("utf-8", "replace")


def decode_rfc2231(value: bytes) -> str:
    """``charset'language'%xx...`` as text (RFC 2231 4); an unknown charset reads as UTF-8."""
    charset, _, rest = value.partition(b"'")
    _language, _, encoded = rest.partition(b"'")
    raw = unquote_to_bytes(encoded)
    try:
        return raw.decode(charset.decode("ascii", "replace") or "us-ascii", "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def _raw_params(data: bytes, at: int) -> list[tuple[str, bytes]]:
    params: list[tuple[str, bytes]] = []
    size = len(data)
    while at < size and len(params) < MAX_PARAMS:
        at = _skip_cfws(data, at)
        if at >= size or data[at] != 0x3B:
            # junk where a ";" belongs: skip to the next one (Dovecot reads on)
            next_semicolon = data.find(b";", at)
            if next_semicolon < 0:
                break
            at = next_semicolon
        at = _skip_cfws(data, at + 1)
        name, at = _token(data, at)
        at = _skip_cfws(data, at)
        if not name or at >= size or data[at] != 0x3D:
            continue
        value, at = _value(data, _skip_cfws(data, at + 1))
        if at < 0:  # an unclosed quoted string: the parameter is dropped (as Dovecot does)
            break
        params.append((name.decode("ascii", "replace"), value))
    return params


def _join_continuations(params: list[tuple[str, bytes]]) -> tuple[tuple[str, bytes], ...]:
    """RFC 2231 3, 4.1: ``name*0``, ``name*1*``... as one ``name`` (or ``name*`` if a section is
    encoded; the others are joined as they are). As Dovecot orders them: the plain parameters in
    their order, then those with a "*" by name.

    As Dovecot reads them, a ``name*`` is an encoded section numbered like the section parameter
    before it (0 when none), and the sections of a name that do not count from 0 without gaps
    are kept one by one as ``name*N*`` / ``name*N``: ``name*0=a; charset*=x`` gives ``charset*1*``."""
    sections: dict[str, list[tuple[int, bool, str, bytes]]] = {}
    plain: list[tuple[str, bytes]] = []
    starred: list[tuple[str, bytes]] = []
    last_index = 0
    for name, value in params:
        found = _SECTION.match(name)
        if found is not None:
            last_index = int(found.group(2))
            base, extended = found.group(1), bool(found.group(3))
        elif name.endswith("*") and name.count("*") == 1:
            base, extended = name[:-1], True
        else:
            if "*" in name:
                last_index = 0
            (starred if "*" in name else plain).append((name, value))
            continue
        sections.setdefault(base.lower(), []).append((last_index, extended, base, value))
    for parts in sections.values():
        starred += _joined(parts)
    return (*plain, *sorted(starred, key=lambda item: item[0].lower()))


def _joined(parts: list[tuple[int, bool, str, bytes]]) -> list[tuple[str, bytes]]:
    ordered = sorted(parts, key=lambda part: part[0])
    if [part[0] for part in ordered] != list(range(len(ordered))):  # RFC 2231 3: from 0, no gaps
        return [(f"{base}*{index}*" if extended else f"{base}*{index}", value)
                for index, extended, base, value in ordered]
    name = ordered[0][2]
    encoded = any(extended for _, extended, _, _ in ordered)
    return [(name + "*" if encoded else name, b"".join(value for *_, value in ordered))]


def parse_content_type(value: bytes) -> ParamValue:
    """A Content-Type value: ``type/subtype`` lower-cased ("" if there is no type) and parameters."""
    at = _skip_cfws(value, 0)
    major, at = _token(value, at)
    at = _skip_cfws(value, at)
    minor = b""
    if at < len(value) and value[at] == 0x2F:
        minor, at = _token(value, _skip_cfws(value, at + 1))
    elif major and _skip_cfws(value, at) < len(value):
        # a type without its subtype, before more: unreadable, shown as "" "" (as Dovecot)
        return ParamValue("/", (), ("", ""))
    original = (major.decode("ascii"), minor.decode("ascii"))
    # a type without its subtype at the end is kept ("messa" ""), as Dovecot shows it
    kind = f"{original[0]}/{original[1]}".lower() if major else ""
    return ParamValue(kind, _join_continuations(_raw_params(value, at)), original)


def parse_disposition(value: bytes) -> ParamValue:
    """A Content-Disposition value (RFC 2183): the type lower-cased and parameters."""
    kind, at = _token(value, _skip_cfws(value, 0))
    text = kind.decode("ascii")
    return ParamValue(text.lower(), _join_continuations(_raw_params(value, at)), (text, ""))


def parse_language(value: bytes) -> list[bytes]:
    """Content-Language (RFC 3282): the language tags, comments removed."""
    tags: list[bytes] = []
    at, size = 0, len(value)
    while at < size and len(tags) < MAX_PARAMS:
        at = _skip_cfws(value, at)
        if at < size and value[at] == 0x22:
            tag, at = _quoted(value, at)
            at = size if at < 0 else at
        else:
            start = at
            while at < size and value[at] not in _WSP and value[at] not in b",(":
                at += 1
            tag = value[start:at]
        if tag:
            tags.append(tag)
        at = _skip_cfws(value, at)
        if at < size and (value[at] == 0x2C or (value[at] not in b"(\"" and not tag)):
            at += 1
    return tags
