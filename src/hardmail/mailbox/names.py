"""Folder names: IMAP modified UTF-7 and the mapping of IMAP names to Maildir++ directories.

IMAP names are UTF-8 with ``/`` as the hierarchy delimiter; ``INBOX`` is case-insensitive. On
disk (Dovecot's Maildir++ layout) INBOX is the account's Maildir itself and every other folder is
one directory ``.<level>.<level>...`` beside INBOX's ``cur/ new/ tmp/``, each level in modified
UTF-7. A level may not contain ``.`` (it would read back as two levels), nor control characters,
nor the LIST wildcards ``%`` and ``*``; levels may not be empty, and the directory name must fit
in a file name, so no name can reach outside the account's directory.

:func:`mutf7_encode` and :func:`mutf7_decode` are pure functions, shared by the IMAP core.
"""

from __future__ import annotations

import base64
import re

from hardmail.mailbox.types import FolderError

DELIMITER = "/"
INBOX = "INBOX"
MAX_DIRNAME_BYTES = 250  # one directory entry per folder; file systems allow 255
MAX_LEVELS = 16
_B64_RUN = re.compile(r"[A-Za-z0-9+,]*")


class InvalidName(FolderError):
    """The name is not a valid folder name; the text is safe to show to a client."""


# RFC 3501 5.1.3 (RFC 9051 5.1.3): modified UTF-7


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
            raise ValueError("modified UTF-7 holds printable ASCII only")
        if char != "&":
            out.append(char)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified base64 run")
        if end == i + 1:
            out.append("&")
        else:
            if last_run_end == i:
                raise ValueError("two modified base64 runs in a row")
            out.append(_decode_run(text[i + 1:end]))
            last_run_end = end + 1
        i = end + 1
    return "".join(out)


def _decode_run(run: str) -> str:
    if not _B64_RUN.fullmatch(run) or len(run) % 4 == 1:
        raise ValueError("bad modified base64 run")
    raw = base64.b64decode(run.replace(",", "/") + "=" * (-len(run) % 4))
    if len(raw) % 2:
        raise ValueError("modified base64 run is not UTF-16")
    if base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") != run:
        raise ValueError("modified base64 run has non-zero padding bits")
    try:
        decoded = raw.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError("modified base64 run is not valid UTF-16") from None
    if any("\x20" <= char <= "\x7e" for char in decoded):
        raise ValueError("modified base64 run encodes printable ASCII")
    return decoded


# folder names


def normalize(name: str) -> str:
    """The canonical IMAP name: ``INBOX`` in upper case (also as the first level), a trailing
    delimiter dropped; raises :class:`InvalidName` for a name this server does not store."""
    if name.endswith(DELIMITER):
        name = name[:-1]
    levels = name.split(DELIMITER)
    if levels[0].upper() == INBOX:
        levels[0] = INBOX
    if len(levels) > MAX_LEVELS:
        raise InvalidName("folder name too deep")
    for level in levels:
        _check_level(level)
    canonical = DELIMITER.join(levels)
    if len(dirname(canonical).encode("ascii")) > MAX_DIRNAME_BYTES:
        raise InvalidName("folder name too long")
    return canonical


def _check_level(level: str) -> None:
    if not level:
        raise InvalidName("empty level in folder name")
    if "." in level:
        raise InvalidName("'.' is not allowed in a folder name")
    if "%" in level or "*" in level:
        raise InvalidName("'%' and '*' are not allowed in a folder name")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in level):
        raise InvalidName("control characters are not allowed in a folder name")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in level):
        raise InvalidName("folder name is not valid Unicode")


def is_inbox(name: str) -> bool:
    return name.upper() == INBOX


def dirname(name: str) -> str:
    """The Maildir++ directory of a canonical name: ``""`` for INBOX, else ``.<levels>``
    (``Archive/Été`` → ``.Archive.&AMk-t&AOk-``)."""
    if name == INBOX:
        return ""
    return "." + ".".join(mutf7_encode(level) for level in name.split(DELIMITER))


def name_of_dirname(entry: str) -> str | None:
    """The IMAP name of a Maildir++ directory entry (``.Sent`` → ``Sent``), None when ``entry`` is
    not a folder directory this server would have made."""
    if not entry.startswith(".") or entry in (".", ".."):
        return None
    try:
        name = DELIMITER.join(mutf7_decode(level) for level in entry[1:].split("."))
        canonical = normalize(name)
    except ValueError:
        return None
    return canonical if dirname(canonical) == entry else None


def parent_names(name: str) -> list[str]:
    """``a/b/c`` → ``["a", "a/b"]``."""
    levels = name.split(DELIMITER)
    return [DELIMITER.join(levels[:i]) for i in range(1, len(levels))]
