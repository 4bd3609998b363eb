"""IMAP modified UTF-7 mailbox names (RFC 3501 5.1.3), a pure codec.

Printable US-ASCII other than ``&`` stands for itself, ``&`` is ``&-``, everything else is UTF-16BE
in modified base64 (``,`` for ``/``, no padding) between ``&`` and ``-``. Decoding is strict, as
Dovecot's: a shifted run must end with ``-``, hold whole UTF-16 units with zero padding bits, and
must not encode printable ASCII, and two runs may not follow each other.
"""

from __future__ import annotations

import base64
import re

_B64_RUN = re.compile(r"[A-Za-z0-9+,]*")


class Mutf7Error(ValueError):
    """The name is not valid modified UTF-7."""


def mutf7_encode(text: str) -> str:
    """``text`` in IMAP modified UTF-7: printable ASCII as is (``&`` as ``&-``), other characters
    as UTF-16BE in modified base64 (``,`` for ``/``, no padding) between ``&`` and ``-``."""
    out: list[str] = []
    pending: list[str] = []
    for char in text:
        if "\x20" <= char <= "\x7e":
            if pending:
                out.append(_encode_run("".join(pending)))
                pending = []
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    if pending:
        out.append(_encode_run("".join(pending)))
    return "".join(out)


def _encode_run(run: str) -> str:
    encoded = base64.b64encode(run.encode("utf-16-be")).decode("ascii").rstrip("=")
    return "&" + encoded.replace("/", ",") + "-"


def mutf7_decode(text: str) -> str:
    """The UTF-8 text of a modified UTF-7 name; raises ValueError for anything that is not its
    one canonical encoding (8-bit or control characters, a bad or unterminated base64 run, a run
    that encodes printable ASCII, two runs in a row, non-zero padding bits, lone surrogates)."""
    out: list[str] = []
    i, last_run_end = 0, -1
    while i < len(text):
        char = text[i]
        if not "\x20" <= char <= "\x7e":
            raise Mutf7Error("modified UTF-7 holds printable ASCII only")
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise Mutf7Error("unterminated modified base64 run")
        if end == i + 1:
            out.append("&")
        else:
            if last_run_end == i:
                raise Mutf7Error("two modified base64 runs in a row")
            out.append(_decode_run(text[i + 1:end]))
            last_run_end = end + 1
        i = end + 1
    return "".join(out)


def _decode_run(run: str) -> str:
    if not _B64_RUN.fullmatch(run) or len(run) % 4 == 1:
        raise Mutf7Error("bad modified base64 run")
    raw = base64.b64decode(run.replace(",", "/") + "=" * (-len(run) % 4))
    if len(raw) % 2:
        raise Mutf7Error("modified base64 run is not UTF-16")
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != run:
        raise Mutf7Error("modified base64 run has non-zero padding bits")
    try:
        decoded = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise Mutf7Error("modified base64 run is not valid UTF-16") from None
    if any("\x20" <= char <= "\x7e" for char in decoded):
        raise Mutf7Error("modified base64 run encodes printable ASCII")
    return decoded
