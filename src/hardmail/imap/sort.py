"""SORT (RFC 5256 3) and the base subject (RFC 5256 2.1) shared with THREAD: the sort keys
ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, RFC 5957's DISPLAYFROM and DISPLAYTO, each possibly
REVERSE, over message descriptors given in sequence order (ties keep that order: RFC 5256 3).
Strings compare by i;unicode-casemap (RFC 5051: title case, then NFKD), as Dovecot's
I18NLEVEL=1: "Émilie" sorts between "Eve" and "Frank". Pure."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from hardmail.mime.addresses import imap_addresses
from hardmail.mime.headers import HeaderBlock
from hardmail.mime.text import decode_header

MAX_SUBJECT = 4096  # characters of a subject read for its base subject (bounds the work)
SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")
MAX_DATE_FIELD = 256

# RFC 5256 5: subj-blob = "[" *BLOBCHAR "]" *WSP ; subj-refwd = ("re" / ("fw" ["d"])) *WSP
# [subj-blob] ":" ; subj-leader = (*subj-blob subj-refwd) / WSP
_BLOB = r"\[[^\[\]]*\][ \t]*"
_REFWD_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)[ \t]*(?:{_BLOB})?:", re.I)
_BLOB_PREFIX = re.compile(_BLOB)
_WHITE = re.compile(r"[ \t\r\n]+")


def casemap(text: str) -> str:
    """RFC 5051 i;unicode-casemap: each character in title case, then NFKD; compare the results
    by code point (the order of their UTF-8)."""
    return unicodedata.normalize("NFKD", "".join(char.title() for char in _WHITE.sub(" ", text)))


class SortableMessage(Protocol):
    """What SORT and THREAD need of a message (in sequence order in the list given)."""

    @property
    def uid(self) -> int: ...
    @property
    def internaldate(self) -> datetime: ...
    @property
    def size(self) -> int: ...
    @property
    def headers(self) -> HeaderBlock: ...


class SortCriterionLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def reverse(self) -> bool: ...


M = TypeVar("M", bound=SortableMessage)


def _strip_trailers(text: str) -> tuple[str, bool]:
    """RFC 5256 2.1 (2): trailing "(fwd)" and white space removed."""
    forwarded = False
    while True:
        text = text.rstrip(" \t")
        if text[-5:].lower() != "(fwd)":
            return text, forwarded
        text, forwarded = text[:-5], True


def _strip_leaders(text: str) -> tuple[str, bool]:
    """RFC 5256 2.1 (3)-(5): leading "Re:", "Fwd:", "[blob]" (if text remains) and WSP removed."""
    reply = False
    while True:
        found = _REFWD_LEADER.match(text)
        if found is not None:
            text, reply = text[found.end():], True
            continue
        if text[:1] in (" ", "\t") and text:
            text = text.lstrip(" \t")
            continue
        blob = _BLOB_PREFIX.match(text)
        if blob is not None and text[blob.end():].strip(" \t"):
            text = text[blob.end():]
            continue
        return text, reply


def base_subject_and_reply(subject: str) -> tuple[str, bool]:
    """RFC 5256 2.1: the base subject of a decoded subject, and whether anything removed marked
    it as a reply or a forward (used by THREAD=REFERENCES's subject merging)."""
    text = _WHITE.sub(" ", subject[:MAX_SUBJECT])  # (1): tabs and continuations as one space
    reply = False
    while True:
        text, forwarded = _strip_trailers(text)  # (2)
        text, replied = _strip_leaders(text)  # (3), (4), (5)
        reply = reply or forwarded or replied
        # (6): "[fwd:" ... "]" around the rest is removed, and again from (2)
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text, reply = text[5:-1], True
            continue
        return text, reply


def base_subject(subject: str) -> str:
    """RFC 5256 2.1: the base subject (7) of a decoded subject."""
    return base_subject_and_reply(subject)[0]


def _first(block: HeaderBlock, name: str) -> bytes | None:
    found = block.named(name)
    return block.raw_value(found[0]) if found else None


def subject_of(block: HeaderBlock) -> str:
    """The decoded Subject (RFC 5256 2.1 (1): encoded words converted)."""
    raw = _first(block, "subject")
    return decode_header(raw) if raw is not None else ""


_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# RFC 5322 4.3 obs-zone: the US zones; any other name (and military letters) means -0000
_ZONES = {"ut": 0, "gmt": 0, "z": 0, "edt": -4, "est": -5, "cdt": -5, "cst": -6, "mdt": -6, "mst": -7,
          "pdt": -7, "pst": -8}
# RFC 5322 3.3 date-time (with 4.3's obsolete forms): [day ","] day month year hh:mm[:ss] zone
_DATE = re.compile(rb"[ \t]*(?:[A-Za-z]+[ \t]*,[ \t]*)?(\d{1,2})[ \t]+([A-Za-z]{3})[A-Za-z]*[ \t]+(\d{2,4})[ \t]+"
                   rb"(\d{1,2}):(\d{2})(?::(\d{2}))?[ \t]+([+-]\d{4}|[A-Za-z]+)")


def parse_date(raw: bytes) -> float | None:
    """A Date field value (RFC 5322 3.3, 4.3) as a UTC timestamp, or None when it is not one (as
    strict as Dovecot: a zone after a space, hours and minutes; ``01 Jan 2001 00:01+0000`` is not
    a date)."""
    found = _DATE.match(raw[:MAX_DATE_FIELD])
    if found is None:
        return None
    day, month_name, year_text, hour, minute, second, zone = found.groups()
    month = _MONTHS.get(month_name.decode("ascii").lower())
    year = int(year_text)
    if len(year_text) < 4:  # RFC 5322 4.3: 2 digits are 1950-2049, 3 digits 1900 + n
        year += 2000 if len(year_text) == 2 and year < 50 else 1900
    if zone[:1] in b"+-":
        offset = (int(zone[1:3]) * 60 + int(zone[3:5])) * (-1 if zone[:1] == b"-" else 1)
    else:
        offset = _ZONES.get(zone.decode("ascii").lower(), 0) * 60
    try:
        when = datetime(year, month or 0, int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC)
    except ValueError:  # no such month, day or time
        return None
    return when.timestamp() - offset * 60


def sent_date(message: SortableMessage) -> float:
    """RFC 5256 2.2: the Date field as a UTC timestamp, else the INTERNALDATE."""
    raw = _first(message.headers, "date")
    parsed = parse_date(raw) if raw is not None else None
    return message.internaldate.timestamp() if parsed is None else parsed


def _first_address(block: HeaderBlock, name: str) -> tuple[bytes | None, ...] | None:
    raw = _first(block, name)
    if raw is None:
        return None
    found = imap_addresses(raw)  # the first, a group's start too (its name is the mailbox, as Dovecot)
    return found[0] if found else None


def _mailbox_key(block: HeaderBlock, name: str) -> str:
    """RFC 5256 3: the addr-mailbox of the first address (empty when there is none)."""
    address = _first_address(block, name)
    if address is None or address[2] is None:
        return ""
    return casemap(decode_header(address[2]))


def _display_key(block: HeaderBlock, name: str) -> str:
    """RFC 5957 3: the decoded display name of the first address, else its addr-spec."""
    address = _first_address(block, name)
    if address is None:
        return ""
    display = decode_header(address[0]).strip() if address[0] else ""
    if display:
        return casemap(display)
    return casemap(decode_header((address[2] or b"") + (b"@" + address[3] if address[3] else b"")))


_KEYS: dict[str, Callable[[SortableMessage], Any]] = {
    "ARRIVAL": lambda m: m.internaldate.timestamp(),
    "CC": lambda m: _mailbox_key(m.headers, "cc"),
    "DATE": sent_date,
    "FROM": lambda m: _mailbox_key(m.headers, "from"),
    "SIZE": lambda m: m.size,
    "SUBJECT": lambda m: casemap(base_subject(subject_of(m.headers))),
    "TO": lambda m: _mailbox_key(m.headers, "to"),
    "DISPLAYFROM": lambda m: _display_key(m.headers, "from"),
    "DISPLAYTO": lambda m: _display_key(m.headers, "to"),
}


def sort_key(name: str) -> Callable[[SortableMessage], Any]:
    """The key function of a sort key name (upper-case); KeyError for an unknown one."""
    return _KEYS[name.upper()]


def sort_messages(messages: Sequence[M], criteria: Sequence[SortCriterionLike]) -> list[M]:
    """``messages`` (in sequence order) sorted by ``criteria`` (RFC 5256 3): each key after the
    first orders the messages the earlier ones leave equal; the last ties keep sequence order."""
    ordered = list(messages)
    for criterion in reversed(criteria):
        key = sort_key(criterion.key)
        cache = {id(message): key(message) for message in ordered}
        # a stable sort: with reverse=True, equal elements still keep their order
        ordered.sort(key=lambda message: cache[id(message)], reverse=criterion.reverse)
    return ordered
