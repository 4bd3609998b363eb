"""When scheduled backups run: parsing ``backup.schedule``, the next run after a moment in a time
zone (correct across daylight-saving changes), the time zone of ``backup.timezone``, and whether
a backup missed while the server was down is due at start-up. Pure functions, no I/O except
reading the system's zone.

A schedule is a set of local wall-clock times of every day:

- ``"03:00"``: daily at that local time; ``"03:00, 15:30"``: at each of those times;
- ``"hourly"``: at every full hour; ``"every 6h"``: every 6 hours from local midnight (00:00,
  06:00, 12:00, 18:00; the hours must divide 24); ``"every 30m"``: every 30 minutes from the full
  hour (15, 20 or 30 minutes: they must divide 60, and backups more often than every 15 minutes
  make no sense).

Daylight-saving time: a local time that does not exist that day (the clock jumps over it) runs at
the first moment after it (the moment of the jump); a local time that happens twice (the clock goes
back) runs once, at its first occurrence.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = timedelta(days=1)
_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_EVERY = re.compile(r"every\s*(\d+)\s*(h|hours?|m|min|mins|minutes?)")
_MIN_INTERVAL_MINUTES = 15
_LOCALTIME = "/etc/localtime"
SCHEDULE_HELP = ('use "HH:MM" (daily at that local time), a comma-separated list of times such as '
                 '"03:00, 15:00", "hourly", "every Nh" (N dividing 24) or "every Nm" (15, 20 or 30)')


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; ``str()`` says what is allowed."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """The local wall-clock times of each day at which a backup runs (sorted, at least one)."""

    text: str
    times: tuple[time, ...]

    def period(self) -> timedelta:
        """The longest wait between two runs (24 hours for a daily schedule)."""
        minutes = [t.hour * 60 + t.minute for t in self.times]
        gaps = [later - earlier for earlier, later in itertools.pairwise(minutes)]
        gaps.append(minutes[0] + 24 * 60 - minutes[-1])
        return timedelta(minutes=max(gaps))


def parse_schedule(text: str) -> Schedule:
    """``backup.schedule`` → :class:`Schedule`; raises ScheduleError saying what is allowed."""
    words = " ".join(text.strip().lower().split())
    if not words:
        raise ScheduleError(f"the schedule is empty; {SCHEDULE_HELP} (to turn scheduled backups off, "
                            "set backup.enabled = false)")
    if words == "hourly":
        return Schedule(text, _every(60))
    match = _EVERY.fullmatch(words)
    if match:
        return Schedule(text, _interval_times(int(match[1]), match[2].startswith("h")))
    return Schedule(text, _listed_times(words))


def _listed_times(words: str) -> tuple[time, ...]:
    times = set()
    for item in (part.strip() for part in words.split(",")):
        match = _TIME.fullmatch(item)
        if not match:
            raise ScheduleError(f"{item!r} is not a time of day in the schedule; {SCHEDULE_HELP}")
        times.add(time(int(match[1]), int(match[2])))
    return tuple(sorted(times))


def _interval_times(count: int, hours: bool) -> tuple[time, ...]:
    if hours:
        if count < 1 or 24 % count:
            raise ScheduleError(f"every {count}h: the hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
        return _every(count * 60)
    if count < _MIN_INTERVAL_MINUTES or 60 % count:
        raise ScheduleError(f"every {count}m: the minutes must be 15, 20 or 30 (for longer intervals use hours)")
    return _every(count)


def _every(minutes: int) -> tuple[time, ...]:
    return tuple(time(m // 60, m % 60) for m in range(0, 24 * 60, minutes))


# --- time zones ----------------------------------------------------------------------------------

def resolve_timezone(name: str) -> tzinfo:
    """``backup.timezone``: "" is the system's local zone, else an IANA name such as Europe/Berlin."""
    if not name.strip():
        return system_timezone()
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not a known time zone; use an IANA name such as "
                            "Europe/Berlin or America/New_York, or \"\" for the system's zone") from None


def system_timezone() -> tzinfo:
    """The system's zone with its daylight-saving rules ($TZ, else /etc/localtime); UTC when it
    cannot be found. (``datetime.now().astimezone()`` would give a fixed offset, wrong after the
    next change.)"""
    key = os.environ.get("TZ", "").lstrip(":")
    if key:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    target = os.path.realpath(_LOCALTIME)
    if "/zoneinfo/" in target:  # a link into the zone database: its name (Europe/Berlin)
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
    try:
        with open(_LOCALTIME, "rb") as source:
            return ZoneInfo.from_file(source, key="localtime")
    except (OSError, ValueError):
        return UTC


# --- the next run --------------------------------------------------------------------------------

def next_run(schedule: Schedule | str, after: datetime, tz: tzinfo) -> datetime:
    """The first scheduled moment strictly after ``after`` (timezone-aware), in ``tz``.

    Compare results in UTC: Python compares two datetimes of one zone by their wall-clock times,
    which is wrong inside a repeated hour (and never finds one equal to another zone's)."""
    if after.tzinfo is None:
        raise ValueError("next_run needs a timezone-aware datetime")
    plan = parse_schedule(schedule) if isinstance(schedule, str) else schedule
    after_utc = after.astimezone(UTC)
    start = after.astimezone(tz).date() - DAY
    for offset in range(5):  # a day may be skipped entirely (Samoa, 2011-12-30)
        day = start + offset * DAY
        for at in plan.times:
            moment = local_instant(day, at, tz)
            if moment.astimezone(UTC) > after_utc:
                return moment
    raise AssertionError("unreachable: every schedule has a time on every day")


def local_instant(day: date, at: time, tz: tzinfo) -> datetime:
    """The moment the local clock of ``tz`` shows ``at`` on ``day``: its first occurrence when it
    shows it twice, the moment of the jump when it skips it."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0)
    if _local_naive(first.astimezone(UTC), tz) == naive:
        return first.astimezone(tz)
    return _end_of_gap(naive, tz)


def _local_naive(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _end_of_gap(naive: datetime, tz: tzinfo) -> datetime:
    """The first whole second whose local time is at or after ``naive`` (inside a gap: the jump)."""
    bounds = sorted(int(naive.replace(tzinfo=tz, fold=fold).timestamp()) for fold in (0, 1))
    low, high = bounds[0], bounds[1]
    while low < high:
        middle = (low + high) // 2
        if _local_naive(datetime.fromtimestamp(middle, UTC), tz) >= naive:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC).astimezone(tz)


def catch_up_due(schedule: Schedule, last_good: datetime | None, now: datetime) -> bool:
    """At start-up: whether a backup should run soon rather than at the next scheduled time,
    because there never was a good one or the last good one is older than one schedule period
    (the server was down when it should have run)."""
    return last_good is None or now - last_good > schedule.period()
