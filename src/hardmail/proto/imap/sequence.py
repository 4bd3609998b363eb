"""IMAP sequence sets (RFC 9051 9 ``sequence-set``): numbers, ranges, ``*`` and ``$`` (RFC 5182).

A set is kept as its ranges, never expanded on parse: ``1:*`` on a 100,000-message mailbox costs
nothing until :meth:`SequenceSet.resolve` or :meth:`SequenceSet.filter` is asked for numbers.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

STAR = 0  # "*" in a range end: the largest number in use (RFC 9051 9 seq-number)
MAX_NUMBER = 0xFFFFFFFF  # RFC 9051 9: nz-number is a 32-bit value


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """``ranges`` are (low, high) pairs as sent (``STAR`` = 0 stands for ``*``), reversed ranges kept
    as sent; ``saved`` is the ``$`` of RFC 5182 (the last ``SEARCH RETURN (SAVE)`` result), alone or
    after ranges (RFC 5182 3: ``sequence-set =/ seq-last-command`` inside the recursive rule)."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    @classmethod
    def of(cls, *numbers: int) -> SequenceSet:
        return cls(tuple((n, n) for n in numbers))

    def __str__(self) -> str:
        return ",".join([_range_text(lo, hi) for lo, hi in self.ranges] + (["$"] if self.saved else []))

    @property
    def uses_star(self) -> bool:
        return any(STAR in pair for pair in self.ranges)

    def bounds(self, largest: int) -> Iterator[tuple[int, int]]:
        """Each range as an ordered (low, high) with ``*`` replaced by ``largest``."""
        for lo, hi in self.ranges:
            lo = largest if lo == STAR else lo
            hi = largest if hi == STAR else hi
            yield (lo, hi) if lo <= hi else (hi, lo)

    def exceeds(self, largest: int) -> bool:
        """True when a number (other than ``*``) is above ``largest``: for message sequence numbers
        that is a client error (RFC 9051 9: ``seq-number`` must exist)."""
        return any(n != STAR and n > largest for pair in self.ranges for n in pair)

    def contains(self, value: int, largest: int, saved: Sequence[int] = ()) -> bool:
        return any(lo <= value <= hi for lo, hi in self.bounds(largest)) or (self.saved and value in saved)

    def resolve(self, largest: int, saved: Sequence[int] = ()) -> list[int]:
        """Sorted distinct numbers 1..``largest`` in the set (``saved`` stands for ``$``)."""
        if largest <= 0:
            return []
        merged = _merge(sorted((max(lo, 1), min(hi, largest)) for lo, hi in self.bounds(largest)))
        numbers = [n for lo, hi in merged for n in range(lo, hi + 1)]
        if self.saved:
            return sorted(set(numbers).union(n for n in saved if 1 <= n <= largest))
        return numbers

    def filter(self, values: Sequence[int], saved: Sequence[int] = ()) -> list[int]:
        """The members of sorted ``values`` (e.g. the UIDs in a mailbox) that are in the set;
        ``*`` is the largest of ``values`` (RFC 9051 6.4.9: ``n:*`` always includes the last)."""
        if not values:
            return []
        out: set[int] = set(saved).intersection(values) if self.saved else set()
        for lo, hi in self.bounds(values[-1]):
            start = bisect.bisect_left(values, lo)
            stop = bisect.bisect_right(values, hi)
            out.update(values[start:stop])
        return sorted(out)


def _range_text(lo: int, hi: int) -> str:
    def one(n: int) -> str:
        return "*" if n == STAR else str(n)

    return one(lo) if lo == hi else f"{one(lo)}:{one(hi)}"


def _merge(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in pairs:
        if lo > hi:
            continue
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def compress(numbers: Sequence[int]) -> str:
    """Sorted distinct numbers written as a compact sequence set (``1:3,7``), for responses."""
    parts: list[str] = []
    start = prev = None
    for n in sorted(set(numbers)):
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(_range_text(start, prev or start))
        start = prev = n
    if start is not None:
        parts.append(_range_text(start, prev or start))
    return ",".join(parts)
