"""Folder names: IMAP modified UTF-7 and the mapping of IMAP names to Maildir++ directories.

IMAP names are UTF-8 with ``/`` as the hierarchy delimiter; ``INBOX`` is case-insensitive. On
disk (Dovecot's Maildir++ layout) INBOX is the account's Maildir itself and every other folder is
one directory ``.<level>.<level>...`` beside INBOX's ``cur/ new/ tmp/``, each level in modified
UTF-7. A level may not contain ``.`` (it would read back as two levels), nor control characters,
nor the LIST wildcards ``%`` and ``*``; levels may not be empty, and the directory name must fit
in a file name, so no name can reach outside the account's directory.

Each level is encoded by :mod:`hardmail.proto.imap.mutf7`, the one modified UTF-7 codec.
"""

from __future__ import annotations

from hardmail.mailbox.types import FolderError
from hardmail.proto.imap.mutf7 import mutf7_decode, mutf7_encode

DELIMITER = "/"
INBOX = "INBOX"
MAX_DIRNAME_BYTES = 250  # one directory entry per folder; file systems allow 255
MAX_LEVELS = 16


class InvalidName(FolderError):
    """The name is not a valid folder name; the text is safe to show to a client."""


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
