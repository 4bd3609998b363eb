"""The SEARCH key tree (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 7162 3.1.5 MODSEQ, RFC 5032 WITHIN).

One node class per kind of test; the parser builds it, ``hardmail.imap.search`` evaluates it. Keys
that are only a flag test (ANSWERED, UNSEEN, KEYWORD x, NEW, OLD, ...) become :class:`FlagKey`
nodes or small combinations (NEW = RECENT and UNSEEN), so the evaluator has few cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from hardmail.proto.imap.sequence import SequenceSet


@dataclass(frozen=True, slots=True)
class SearchKey:
    """Base class of every search key node."""


@dataclass(frozen=True, slots=True)
class AllKey(SearchKey):
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class FlagKey(SearchKey):
    """A flag (``\\Seen``, ``\\Recent``, ...) or keyword (``$Forwarded``) is set (``present``) or not."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class DateKey(SearchKey):
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE (Date header)."""

    field: Literal["internal", "sent"]
    op: Literal["before", "on", "since"]
    day: date


@dataclass(frozen=True, slots=True)
class WithinKey(SearchKey):
    """RFC 5032 OLDER n / YOUNGER n: internal date at least / less than n seconds ago."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class HeaderKey(SearchKey):
    """HEADER name value (and BCC/CC/FROM/SUBJECT/TO): substring of the field, case-insensitive;
    an empty ``value`` matches every message that has the field (RFC 9051 6.4.4)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey(SearchKey):
    """BODY (``where="body"``) or TEXT (header and body) substring, case-insensitive."""

    where: Literal["body", "text"]
    value: str


@dataclass(frozen=True, slots=True)
class SizeKey(SearchKey):
    """LARGER n / SMALLER n on RFC822.SIZE."""

    op: Literal["larger", "smaller"]
    size: int


@dataclass(frozen=True, slots=True)
class SeqKey(SearchKey):
    """A sequence set (``uid=False``) or ``UID`` set; ``$`` is ``numbers.saved``."""

    numbers: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class ModSeqKey(SearchKey):
    """RFC 7162 3.1.5: MODSEQ ["entry-name" entry-type] modseq: the message's MODSEQ ≥ ``modseq``."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class NotKey(SearchKey):
    key: SearchKey


@dataclass(frozen=True, slots=True)
class OrKey(SearchKey):
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class AndKey(SearchKey):
    """A parenthesised list or the top-level key list: every key matches."""

    keys: tuple[SearchKey, ...]


def walk(key: SearchKey) -> list[SearchKey]:
    """``key`` and every node below it, depth first."""
    out: list[SearchKey] = []
    stack = [key]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, NotKey):
            stack.append(node.key)
        elif isinstance(node, OrKey):
            stack.extend((node.right, node.left))
        elif isinstance(node, AndKey):
            stack.extend(reversed(node.keys))
    return out
