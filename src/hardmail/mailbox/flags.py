"""IMAP flags as the mailbox store keeps them: system flags in their canonical spelling
(RFC 9051 2.3.2), keywords as given (atoms), ``\\Recent`` never stored. Flag names compare case-insensitively
(RFC 9051 2.3.2): a keyword keeps the spelling first used in its folder (as Dovecot does)."""

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


def has_keywords(flags: Iterable[str]) -> bool:
    return any(not flag.startswith("\\") for flag in flags)


def spell_like(flags: frozenset[str], known: Iterable[str]) -> frozenset[str]:
    """``flags`` with each keyword in the spelling of the first ``known`` keyword equal to it
    ignoring case (RFC 9051 2.3.2), duplicates ignoring case dropped."""
    spelling: dict[str, str] = {}
    for flag in known:
        spelling.setdefault(flag.lower(), flag)
    kept: dict[str, str] = {}
    for flag in sorted(flags):
        kept.setdefault(flag.lower(), spelling.get(flag.lower(), flag))
    return frozenset(kept.values())


def apply_mode(current: frozenset[str], mode: Literal["add", "remove", "set"], flags: frozenset[str]) -> frozenset[str]:
    """STORE's change, comparing flag names ignoring case (RFC 9051 2.3.2)."""
    if mode == "add":
        have = {flag.lower() for flag in current}
        return current | {flag for flag in flags if flag.lower() not in have}
    if mode == "remove":
        gone = {flag.lower() for flag in flags}
        return frozenset(flag for flag in current if flag.lower() not in gone)
    return flags
