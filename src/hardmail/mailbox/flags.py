"""IMAP flags as the mailbox store keeps them: system flags in their canonical spelling
(RFC 9051 2.3.2), keywords as given (atoms), ``\\Recent`` never stored."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

SYSTEM = {flag.lower(): flag for flag in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
MAX_KEYWORD = 100
_ATOM_SPECIALS = frozenset('(){ %*"\\]')


def clean_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in canonical case; keywords that are IMAP atoms; the rest (``\\Recent``,
    unknown ``\\`` flags, non-atoms) is dropped."""
    kept = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = SYSTEM.get(flag.lower())
            if canonical is not None:
                kept.add(canonical)
        elif is_keyword(flag):
            kept.add(flag)
    return frozenset(kept)


def is_keyword(flag: str) -> bool:
    # RFC 9051 9 flag-keyword = atom: no atom-specials, CTLs or 8-bit
    return 0 < len(flag) <= MAX_KEYWORD and all(0x20 < ord(c) < 0x7F and c not in _ATOM_SPECIALS for c in flag)


def apply_mode(current: frozenset[str], mode: Literal["add", "remove", "set"], flags: frozenset[str]) -> frozenset[str]:
    if mode == "add":
        return current | flags
    if mode == "remove":
        return current - flags
    return flags
