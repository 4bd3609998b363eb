"""IMAP modified UTF-7 mailbox names (RFC 3501 5.1.3), a pure codec.

Printable US-ASCII other than ``&`` stands for itself, ``&`` is ``&-``, everything else is UTF-16BE
in modified base64 (``,`` for ``/``, no padding) between ``&`` and ``-``. Decoding is strict, as
Dovecot's: a shifted run must end with ``-``, hold whole UTF-16 units with zero padding bits, and
must not encode printable ASCII.
"""

from __future__ import annotations

import base64
import binascii
import re

_SHIFTED = re.compile(r"&([^-]*)-")
_B64 = re.compile(r"^[A-Za-z0-9+,]+$")


class Mutf7Error(ValueError):
    """The name is not valid modified UTF-7."""


def mutf7_encode(name: str) -> str:
    out: list[str] = []
    run: list[str] = []
    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            if run:
                out.append(_shift("".join(run)))
                run.clear()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    if run:
        out.append(_shift("".join(run)))
    return "".join(out)


def _shift(text: str) -> str:
    raw = text.encode("utf-16-be", "surrogatepass")
    return "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"


def mutf7_decode(name: str) -> str:
    if any(not 0x20 <= ord(c) <= 0x7E for c in name):
        raise Mutf7Error("modified UTF-7 is printable US-ASCII")
    out: list[str] = []
    pos = 0
    while (amp := name.find("&", pos)) >= 0:
        out.append(name[pos:amp])
        match = _SHIFTED.match(name, amp)
        if match is None:
            raise Mutf7Error("unterminated '&' run")
        out.append("&" if not match.group(1) else _unshift(match.group(1)))
        pos = match.end()
    out.append(name[pos:])
    return "".join(out)


def _unshift(chunk: str) -> str:
    if not _B64.match(chunk) or len(chunk) % 4 == 1:
        raise Mutf7Error("bad modified base64")
    padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as error:
        raise Mutf7Error("bad modified base64") from error
    if len(raw) % 2 or base64.b64encode(raw).decode("ascii").rstrip("=") != chunk.replace(",", "/"):
        raise Mutf7Error("partial UTF-16 unit or non-zero padding bits")
    try:
        text = raw.decode("utf-16-be")
    except UnicodeDecodeError as error:
        raise Mutf7Error("bad UTF-16 in modified base64") from error
    if any(0x20 <= ord(c) <= 0x7E for c in text):
        raise Mutf7Error("printable ASCII must not be base64-encoded")
    return text
