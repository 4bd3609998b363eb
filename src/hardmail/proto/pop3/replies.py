"""POP3 responses: ``+OK``/``-ERR`` status lines, RFC 2449 response codes, SASL continuations and
small multi-line responses (CAPA, LIST, UIDL), rendered to wire bytes.

RFC 1939 3 defines the format (status indicator, text, CRLF; multi-line responses byte-stuffed
and ended by ``.CRLF``); RFC 2449 8 the ``[CODE]`` after the indicator; RFC 5034 4 the ``+ ``
continuation of an AUTH exchange. Named responses used across the server live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["+OK", "-ERR", "+"]
MAX_TEXT = 400  # RFC 2449 4: a response line is at most 512 octets; keep the text well within


@dataclass(frozen=True, slots=True)
class Pop3Reply:
    """One POP3 response. ``lines`` makes it multi-line (byte-stuffed on output)."""

    status: Status
    text: str = ""
    code: str | None = None  # RFC 2449 8: "AUTH", "SYS/TEMP", "SYS/PERM", "IN-USE"
    lines: tuple[str, ...] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "+OK"

    @property
    def is_error(self) -> bool:
        return self.status == "-ERR"

    @property
    def is_continuation(self) -> bool:
        return self.status == "+"

    def status_line(self) -> bytes:
        if self.is_continuation:  # RFC 5034 4: "+" SP base64
            return f"+ {self.text}\r\n".encode("ascii")
        code = f" [{self.code}]" if self.code else ""
        text = _one_line(self.text)
        return f"{self.status}{code}{' ' if text else ''}{text}\r\n".encode("utf-8", "replace")

    def to_bytes(self) -> bytes:
        head = self.status_line()
        if self.lines is None:
            return head
        body = "".join(("." + line if line.startswith(".") else line) + "\r\n" for line in self.lines)
        return head + body.encode("utf-8", "replace") + b".\r\n"  # RFC 1939 3

    def with_text(self, text: str) -> Pop3Reply:
        return Pop3Reply(self.status, text, self.code, self.lines)


def _one_line(text: str) -> str:
    """Response text cannot break the line (a user name echoed back, an error detail), nor carry
    a control character (C0, DEL, C1: terminal escapes in an echoed argument) to the client."""
    clean = "".join(" " if _is_control(char) else char for char in text)
    return clean[:MAX_TEXT]


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def ok(text: str = "", lines: tuple[str, ...] | None = None) -> Pop3Reply:
    return Pop3Reply("+OK", text, None, lines)


def err(text: str, code: str | None = None) -> Pop3Reply:
    return Pop3Reply("-ERR", text, code)


def continuation(data_base64: str) -> Pop3Reply:
    return Pop3Reply("+", data_base64)


# Authorization state
GREETING = ok("hardmail ready.")  # RFC 1939 4: no APOP timestamp, APOP is not offered
USER_OK = ok("")  # RFC 1939 7: the same answer whether the user exists or not
LOGGED_IN = ok("Logged in.")
AUTH_FAILED = err("Authentication failed.", "AUTH")  # RFC 3206 4: one answer for every failure
AUTH_TEMP_FAILURE = err("Temporary authentication failure, try again later.", "SYS/TEMP")  # RFC 3206 5
AUTH_BANNED = err("Too many failed logins from your address; try again later.", "SYS/TEMP")
PLAINTEXT_REFUSED = err("Plaintext authentication disallowed on a connection without TLS: use STLS first.",
                        "AUTH")
AUTH_ABORTED = err("Authentication aborted.")  # RFC 5034 4: "*" or a bad base64 line
BAD_BASE64 = err("Invalid base64 data in the authentication response.")
TOO_MANY_LOGIN_FAILURES = err("Too many failed logins, closing connection.", "AUTH")
BEGIN_TLS = ok("Begin TLS negotiation now.")
TLS_UNAVAILABLE = err("TLS is not available.", "SYS/TEMP")
IN_USE = err("Mailbox is locked by another POP3 session.", "IN-USE")  # RFC 2449 8.1.1
MAILDROP_UNAVAILABLE = err("The mailbox cannot be opened now, try again later.", "SYS/TEMP")

# Any state
BYE = ok("Logging out.")
LINE_TOO_LONG = err("Input line too long.")
TOO_MANY_ERRORS = err("Too many bad commands, closing connection.")
TIMEOUT = err("Disconnected for inactivity.")
SHUTTING_DOWN = err("Server shutting down.", "SYS/TEMP")
SESSION_ENDED = err("Your session has ended; please sign in again.", "AUTH")
TEMP_FAILURE = err("Temporary server failure, try again later.", "SYS/TEMP")

# Update state
UPDATE_FAILED = err("Some deleted messages were not removed; try again later.", "SYS/TEMP")  # RFC 1939 6
