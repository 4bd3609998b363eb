"""SEARCH evaluation (RFC 9051 6.4.4, RFC 3501 6.4.4, RFC 7162 3.1.5, RFC 5032, RFC 5182 ``$``) and the
ESEARCH result options (RFC 4731 3.1, RFC 5182 2.1). Pure functions over a message view; the server
loads only what :func:`needs_headers` / :func:`needs_body` say the key needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import parsedate_tz
from typing import Any, Protocol

from hardmail.proto.imap.searchkeys import (
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SearchKey,
    SeqKey,
    SizeKey,
    TextKey,
    WithinKey,
    walk,
)


class SearchableMessage(Protocol):
    """What a key is tested against. ``flags`` holds ``\\Recent`` when the message is recent to this
    session (rev1); ``header`` gives decoded (RFC 2047), unfolded values of every field of the name;
    ``body_text`` the decoded text parts; ``sent_date`` the Date header's date in its own zone."""

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def internaldate(self) -> datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...
    def header(self, name: str) -> list[str]: ...
    def headers_text(self) -> str: ...
    def body_text(self) -> str: ...
    def sent_date(self) -> date | None: ...


@dataclass(frozen=True, slots=True)
class SearchContext:
    """The mailbox around the message: ``*`` for sequence numbers and UIDs, the saved ``$`` result
    (as UIDs, RFC 5182 2.1) and the clock for OLDER/YOUNGER."""

    max_seq: int
    max_uid: int
    saved_uids: frozenset[int] = frozenset()
    now: datetime | None = None


def evaluate(key: SearchKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    test = _TESTS.get(type(key))
    if test is None:
        raise TypeError(f"unknown search key {type(key).__name__}")
    return test(key, msg, ctx)


def search(key: SearchKey, messages: Iterable[SearchableMessage], ctx: SearchContext) -> list[SearchableMessage]:
    return [msg for msg in messages if evaluate(key, msg, ctx)]


# ----- the tests ------------------------------------------------------------------------------------
def _all(key: Any, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return True


def _flag(key: FlagKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    """Flags and keywords compare case-insensitively (RFC 9051 2.3.2)."""
    present = key.flag in msg.flags or key.flag.casefold() in {f.casefold() for f in msg.flags}
    return present == key.present


def _day(moment: datetime) -> date:
    """RFC 9051 6.4.4: BEFORE/ON/SINCE compare dates "disregarding time and timezone": the date as
    written in the internal date's own zone."""
    return moment.date()


def _date(key: DateKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    day = _day(msg.internaldate) if key.field == "internal" else msg.sent_date()
    if day is None:
        return False
    if key.op == "before":
        return day < key.day
    if key.op == "on":
        return day == key.day
    return day >= key.day


def _within(key: WithinKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    """RFC 5032 3: OLDER n: internal date at least n seconds ago; YOUNGER n: within the last n."""
    if ctx.now is None:
        return False
    limit = ctx.now - timedelta(seconds=key.seconds)
    return msg.internaldate <= limit if key.older else msg.internaldate > limit


def _header(key: HeaderKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    values = msg.header(key.name)
    if not key.value:  # RFC 9051 6.4.4: an empty string matches every message with the field
        return bool(values)
    needle = key.value.casefold()
    return any(needle in value.casefold() for value in values)


def _text(key: TextKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    needle = key.value.casefold()
    if key.where == "text" and needle in msg.headers_text().casefold():
        return True
    return needle in msg.body_text().casefold()


def _size(key: SizeKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return msg.size > key.size if key.op == "larger" else msg.size < key.size


def _seq(key: SeqKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    numbers = key.numbers
    if numbers.saved and msg.uid in ctx.saved_uids:
        return True
    if key.uid:
        return numbers.contains(msg.uid, ctx.max_uid) if numbers.ranges else False
    return numbers.contains(msg.seq, ctx.max_seq) if numbers.ranges else False


def _modseq(key: ModSeqKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return msg.modseq >= key.modseq  # RFC 7162 3.1.5: "greater than or equal"


def _not(key: NotKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return not evaluate(key.key, msg, ctx)


def _or(key: OrKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return evaluate(key.left, msg, ctx) or evaluate(key.right, msg, ctx)


def _and(key: AndKey, msg: SearchableMessage, ctx: SearchContext) -> bool:
    return all(evaluate(k, msg, ctx) for k in key.keys)


_TESTS: dict[type, Callable[[Any, SearchableMessage, SearchContext], bool]] = {
    AllKey: _all, FlagKey: _flag, DateKey: _date, WithinKey: _within, HeaderKey: _header, TextKey: _text,
    SizeKey: _size, SeqKey: _seq, ModSeqKey: _modseq, NotKey: _not, OrKey: _or, AndKey: _and,
}


# ----- what the key needs -----------------------------------------------------------------------------
def needs_body(key: SearchKey) -> bool:
    """The message text must be read (BODY, TEXT)."""
    return any(isinstance(node, TextKey) for node in walk(key))


def needs_headers(key: SearchKey) -> bool:
    """The header block must be read (HEADER and its aliases, TEXT, SENT* dates)."""
    return any(isinstance(node, HeaderKey) or (isinstance(node, TextKey) and node.where == "text")
               or (isinstance(node, DateKey) and node.field == "sent") for node in walk(key))


def uses_modseq(key: SearchKey) -> bool:
    """RFC 7162 3.1.5: a MODSEQ key makes the response carry the highest MODSEQ of the matches."""
    return any(isinstance(node, ModSeqKey) for node in walk(key))


def uses_saved(key: SearchKey) -> bool:
    return any(isinstance(node, SeqKey) and node.numbers.saved for node in walk(key))


def parse_sent_date(value: str) -> date | None:
    """The date of a Date header as written (its own zone, RFC 9051 6.4.4 SENT*), or None."""
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return date(parsed[0], parsed[1], parsed[2])
    except ValueError:
        return None


# ----- ESEARCH (RFC 4731) -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SearchResult:
    """``items`` for ``esearch_response`` (MIN, MAX, COUNT, ALL in the RFC's order) and, for SAVE,
    the UIDs to remember as ``$`` (None: keep the old one)."""

    items: list[tuple[str, Any]] = field(default_factory=list)
    saved_uids: frozenset[int] | None = None
    send: bool = True  # RFC 5182 2.1: SAVE alone sends no ESEARCH response


def esearch_result(returns: Sequence[str], matches: Sequence[tuple[int, int]]) -> SearchResult:
    """``matches``: (number reported, UID) pairs in ascending order; ``returns`` as parsed
    (an empty RETURN () means ALL, RFC 4731 3.1)."""
    options = list(returns) or ["ALL"]
    wanted = [o for o in options if o != "SAVE"]
    numbers = [number for number, _ in matches]
    items: list[tuple[str, Any]] = []
    if numbers and "MIN" in wanted:
        items.append(("MIN", numbers[0]))
    if numbers and "MAX" in wanted:
        items.append(("MAX", numbers[-1]))
    if "COUNT" in wanted:
        items.append(("COUNT", len(numbers)))
    if numbers and "ALL" in wanted:
        items.append(("ALL", numbers))
    saved: frozenset[int] | None = None
    if "SAVE" in options:
        saved = _saved(wanted, matches)
    return SearchResult(items, saved, bool(wanted))


def _saved(wanted: list[str], matches: Sequence[tuple[int, int]]) -> frozenset[int]:
    """RFC 5182 2.1: SAVE with MIN and/or MAX (and no ALL or COUNT) saves only those messages."""
    if not matches:
        return frozenset()
    if wanted and not ({"ALL", "COUNT"} & set(wanted)):
        picked = set()
        if "MIN" in wanted:
            picked.add(matches[0][1])
        if "MAX" in wanted:
            picked.add(matches[-1][1])
        return frozenset(picked)
    return frozenset(uid for _, uid in matches)
