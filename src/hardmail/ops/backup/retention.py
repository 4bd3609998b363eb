"""Which archives of a backup destination to keep and which to delete (``backup.keep_daily``,
``keep_weekly``, ``keep_monthly``), as pure functions of the catalog records and the time.

Restic's rules: walking from the newest archive back, the newest archive of each of the last
``keep_daily`` days that have archives is kept, likewise of the last ``keep_weekly`` ISO weeks and
``keep_monthly`` months (days, weeks and months in the time zone of ``now``); one archive may be
kept by several rules. On top of that:

- within a period, a verified good archive is preferred to an unverified one, and an unverified
  one to one whose verification failed: a bad archive is the one kept of a period only when the
  period has nothing better;
- the newest good archive and the newest archive are always kept (the next incremental builds on
  the newest); an archive dated after ``now`` (a clock that was wrong) is kept and not counted, so
  that it cannot push the others out;
- every archive that a kept archive's chain needs (its full and the incrementals between) is kept.

Records are the catalog's ``ArchiveRecord`` objects (or mappings with the same keys): ``name``,
``created_at`` (ISO 8601 or datetime), ``chain`` (names oldest → this), ``parent``, ``verify``
(None, or ``ok``/``at``/``failures``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

State = Literal["good", "unverified", "bad"]
_PREFERENCE: dict[State, int] = {"good": 2, "unverified": 1, "bad": 0}


def _day(at: datetime) -> Hashable:
    return at.date()


def _iso_week(at: datetime) -> Hashable:
    return tuple(at.isocalendar())[:2]


def _month(at: datetime) -> Hashable:
    return (at.year, at.month)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One archive as retention sees it."""

    name: str
    created_at: datetime
    chain: tuple[str, ...]
    parent: str | None
    state: State


@dataclass(frozen=True)
class RetentionPlan:
    """``keep``: archive name → why it is kept; ``delete``: the others, oldest first."""

    keep: dict[str, tuple[str, ...]] = field(default_factory=dict)
    delete: tuple[str, ...] = ()


def archives_to_delete(records: Iterable[Any], now: datetime, keep_daily: int, keep_weekly: int,
                       keep_monthly: int) -> list[str]:
    """The names of the archives that retention deletes, oldest first."""
    return list(retention_plan(records, now, keep_daily, keep_weekly, keep_monthly).delete)


def retention_plan(records: Iterable[Any], now: datetime, keep_daily: int, keep_weekly: int,
                   keep_monthly: int) -> RetentionPlan:
    """What to keep (with the reasons) and what to delete; see the module docstring."""
    if now.tzinfo is None:
        raise ValueError("retention needs a timezone-aware now")
    candidates = sorted((as_candidate(record) for record in records), key=lambda c: (c.created_at, c.name))
    reasons: dict[str, list[str]] = {c.name: ["dated after now"] for c in candidates if c.created_at > now}
    counted = [c for c in candidates if c.name not in reasons]  # a wrong clock must not push the others out
    for name, why in _always_kept(counted):
        reasons.setdefault(name, []).append(why)
    for label, count, period_of in (("daily", keep_daily, _day), ("weekly", keep_weekly, _iso_week),
                                    ("monthly", keep_monthly, _month)):
        for name in _kept_by_period(counted, count, period_of, now.tzinfo):
            reasons.setdefault(name, []).append(label)
    _add_chains(candidates, reasons)
    delete = tuple(c.name for c in candidates if c.name not in reasons)
    return RetentionPlan({name: tuple(why) for name, why in reasons.items()}, delete)


def _always_kept(candidates: list[Candidate]) -> Iterable[tuple[str, str]]:
    if candidates:
        yield candidates[-1].name, "newest"
    good = [c for c in candidates if c.state == "good"]
    if good:
        yield good[-1].name, "newest good"


def _kept_by_period(candidates: list[Candidate], count: int, period_of: Callable[[datetime], Hashable],
                    zone: tzinfo | None) -> list[str]:
    """The best archive of each of the ``count`` newest periods that have archives."""
    if count <= 0:
        return []
    kept: list[str] = []
    best: Candidate | None = None
    current: Hashable = None
    for candidate in reversed(candidates):  # newest first
        period = period_of(candidate.created_at.astimezone(zone))
        if best is not None and period != current:
            kept.append(best.name)
            best = None
            if len(kept) >= count:
                return kept
        current = period
        if best is None or _PREFERENCE[candidate.state] > _PREFERENCE[best.state]:
            best = candidate  # newest first: a later candidate wins only by being better
    if best is not None and len(kept) < count:
        kept.append(best.name)
    return kept


def _add_chains(candidates: list[Candidate], reasons: dict[str, list[str]]) -> None:
    """Keep what the kept archives' chains need (following ``chain`` and ``parent`` links)."""
    by_name = {c.name: c for c in candidates}
    pending = list(reasons)
    while pending:
        candidate = by_name.get(pending.pop())
        if candidate is None:
            continue
        needed = [*candidate.chain, *([candidate.parent] if candidate.parent else [])]
        for name in needed:
            if name in by_name and name not in reasons:
                reasons[name] = [f"chain of {candidate.name}"]
                pending.append(name)


# --- reading records -----------------------------------------------------------------------------

def as_candidate(record: Any) -> Candidate:
    """A catalog record (object or mapping) → :class:`Candidate`."""
    name = str(_field(record, "name"))
    chain = tuple(str(item) for item in (_field(record, "chain") or ()) if str(item) != name)
    parent = _field(record, "parent")
    return Candidate(name=name, created_at=_as_datetime(_field(record, "created_at")), chain=chain,
                     parent=str(parent) if parent else None, state=verify_state(_field(record, "verify")))


def verify_state(verify: Any) -> State:
    """``good`` when verification passed, ``bad`` when it failed, ``unverified`` when none ran."""
    if verify is None:
        return "unverified"
    ok = _field(verify, "ok")
    if ok is None:
        return "unverified"
    return "good" if ok else "bad"


def _field(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


def _as_datetime(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
