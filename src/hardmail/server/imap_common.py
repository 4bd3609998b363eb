"""What every IMAP command handler shares: the tagged result of a command, the exception that
ends a command early with one, and the mapping of mailbox-store errors to response codes.

A handler returns a :class:`Done` (or raises :class:`CommandFailed`); the session writes the
tagged line. Texts are for the client: short, clear, and never an internal detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["OK", "NO", "BAD"]


@dataclass(frozen=True, slots=True)
class Done:
    """The tagged completion of a command (RFC 9051 7.1)."""

    status: Status
    text: str
    code: str | None = None  # the response code without brackets, e.g. "TRYCREATE"


def ok(text: str = "Completed", code: str | None = None) -> Done:
    return Done("OK", text, code)


def no(text: str, code: str | None = None) -> Done:
    return Done("NO", text, code)


def bad(text: str, code: str | None = None) -> Done:
    return Done("BAD", text, code)


class CommandFailed(Exception):
    """Ends the command in progress with ``done`` (a NO or BAD)."""

    def __init__(self, done: Done) -> None:
        super().__init__(done.text)
        self.done = done


def fail(text: str, code: str | None = None) -> CommandFailed:
    return CommandFailed(no(text, code))


# RFC 9051 7.1: the response codes a mailbox-store error maps to, found by the words of its text
# (the store's FolderError texts are written for clients: "no such folder", "folder exists", ...).
_CODES = (
    ("no such", "NONEXISTENT"),
    ("not found", "NONEXISTENT"),
    ("does not exist", "NONEXISTENT"),
    ("exists", "ALREADYEXISTS"),
    ("quota", "OVERQUOTA"),
    ("inbox", "CANNOT"),
    ("invalid", "CANNOT"),
    ("not allowed", "CANNOT"),
    ("cannot", "CANNOT"),
    ("too many", "LIMIT"),
    ("too long", "LIMIT"),
)


def code_for_folder_error(text: str) -> str | None:
    lowered = text.lower()
    for words, code in _CODES:
        if words in lowered:
            return code
    return None


def folder_error_done(exc: Exception, *, missing_code: str = "NONEXISTENT") -> Done:
    """NO with the store's client-safe text and the response code it stands for; a missing
    folder gets ``missing_code`` (TRYCREATE for APPEND/COPY/MOVE targets, RFC 9051 6.3.12)."""
    text = str(exc) or "The mailbox operation failed"
    code = code_for_folder_error(text)
    if code == "NONEXISTENT":
        code = missing_code
    if type(exc).__name__ == "QuotaExceeded":
        code = "OVERQUOTA"
    return no(text[:1].upper() + text[1:], code)
