"""IMAP connection states (RFC 9051 3) and the core's options."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

ENABLE_KNOWN = ("CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2")


class ConnState(Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass(frozen=True, slots=True)
class ImapOptions:
    max_line: int = 8192  # bytes of command text, literal data excluded
    max_literal: int = 64 * 1024  # total literal bytes of any command but APPEND
    append_limit: int = 50 * 1024 * 1024  # RFC 7889 APPENDLIMIT: literal bytes of one APPEND
    literal_plus: bool = True  # LITERAL+ (RFC 7888 3); False: LITERAL- (non-sync literals ≤ 4096)
    starttls_available: bool = True
    tls_active: bool = False
    enable_offered: tuple[str, ...] = ENABLE_KNOWN  # what ENABLE may turn on (RFC 5161)
    max_bad_commands: int = 20  # consecutive BAD answers before the core asks to close
    preauth: bool = False  # start in AUTHENTICATED (RFC 9051 7.1.4 PREAUTH)
