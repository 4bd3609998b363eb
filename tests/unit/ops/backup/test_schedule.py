"""Schedule maths: parsing backup.schedule, the next run across daylight-saving changes, catch-up."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hardmail.ops.backup.schedule import (
    Schedule,
    ScheduleError,
    catch_up_due,
    next_run,
    parse_schedule,
    resolve_timezone,
    system_timezone,
)

NEW_YORK = ZoneInfo("America/New_York")  # 2026: clocks jump 02:00→03:00 on 8 March, go back 02:00→01:00 on 1 November
BERLIN = ZoneInfo("Europe/Berlin")


def ny(*args: int, fold: int = 0) -> datetime:
    """A New York wall-clock time, as UTC (datetimes of one zone compare by wall clock, ignoring fold)."""
    return datetime(*args, tzinfo=NEW_YORK, fold=fold).astimezone(UTC)  # type: ignore[misc]


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def runs(schedule: str, start: datetime, count: int, tz: ZoneInfo = NEW_YORK) -> list[datetime]:
    moments, after = [], start
    for _ in range(count):
        after = next_run(schedule, after, tz)
        moments.append(after)
    return moments


# --- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "times"), [
    ("03:00", [time(3)]),
    ("3:05", [time(3, 5)]),
    (" 15:30 , 03:00 ,03:00", [time(3), time(15, 30)]),
    ("every 6h", [time(0), time(6), time(12), time(18)]),
    ("Every 12 hours", [time(0), time(12)]),
    ("every 24h", [time(0)]),
])
def test_schedules_that_parse(text: str, times: list[time]) -> None:
    assert list(parse_schedule(text).times) == times


def test_hourly_and_minutes() -> None:
    assert len(parse_schedule("hourly").times) == 24
    assert parse_schedule("HOURLY").times[1] == time(1)
    assert parse_schedule("every 30m").times[:3] == (time(0), time(0, 30), time(1))
    assert len(parse_schedule("every 15 minutes").times) == 96


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("24:00", "not a time of day"),
    ("3pm", "not a time of day"),
    ("03:00,", "not a time of day"),
    ("every 5h", "divide 24"),
    ("every 0h", "divide 24"),
    ("every 5m", "15, 20 or 30"),
    ("every 45m", "15, 20 or 30"),
    ("daily", "HH:MM"),
])
def test_schedules_that_do_not_parse_say_what_is_allowed(text: str, says: str) -> None:
    with pytest.raises(ScheduleError, match=says):
        parse_schedule(text)


def test_period_is_the_longest_wait() -> None:
    assert parse_schedule("03:00").period() == timedelta(hours=24)
    assert parse_schedule("03:00,05:00").period() == timedelta(hours=22)
    assert parse_schedule("every 6h").period() == timedelta(hours=6)
    assert parse_schedule("hourly").period() == timedelta(hours=1)


# --- time zones --------------------------------------------------------------------------------

def test_time_zone_names() -> None:
    assert resolve_timezone("Europe/Berlin") == BERLIN
    with pytest.raises(ScheduleError, match="IANA"):
        resolve_timezone("Mars/Olympus")
    with pytest.raises(ScheduleError, match="IANA"):
        resolve_timezone("../etc/passwd")


def test_the_system_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert system_timezone() == NEW_YORK
    assert resolve_timezone("") == NEW_YORK
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert system_timezone() == BERLIN
    monkeypatch.setenv("TZ", "Nowhere/Else")
    assert system_timezone().utcoffset(datetime(2026, 1, 1)) is not None  # falls back to /etc/localtime or UTC


# --- next run on ordinary days -------------------------------------------------------------------

def test_daily_runs_at_the_local_time() -> None:
    assert utc(next_run("03:00", ny(2026, 1, 10, 1, 0), NEW_YORK)) == ny(2026, 1, 10, 3, 0)
    assert utc(next_run("03:00", ny(2026, 1, 10, 3, 0), NEW_YORK)) == ny(2026, 1, 11, 3, 0)  # strictly after
    assert utc(next_run("03:00", ny(2026, 1, 10, 3, 0, 1), NEW_YORK)) == ny(2026, 1, 11, 3, 0)


def test_after_may_be_in_another_zone() -> None:
    after = datetime(2026, 1, 10, 7, 59, tzinfo=UTC)  # 02:59 in New York
    moment = next_run("03:00", after, NEW_YORK)
    assert utc(moment) == datetime(2026, 1, 10, 8, 0, tzinfo=UTC)
    assert moment.tzinfo == NEW_YORK


def test_a_list_of_times_runs_at_each() -> None:
    moments = runs("03:00,15:30", ny(2026, 1, 10, 4, 0), 3)
    assert [utc(m) for m in moments] == [ny(2026, 1, 10, 15, 30), ny(2026, 1, 11, 3, 0), ny(2026, 1, 11, 15, 30)]


def test_a_naive_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run("03:00", datetime(2026, 1, 1), NEW_YORK)


# --- daylight-saving changes ---------------------------------------------------------------------

def test_a_skipped_time_runs_at_the_jump() -> None:
    moment = next_run("02:30", ny(2026, 3, 8, 0, 0), NEW_YORK)
    assert utc(moment) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first moment after 02:30
    assert moment.astimezone(NEW_YORK).hour == 3
    assert utc(next_run("02:30", moment, NEW_YORK)) == ny(2026, 3, 9, 2, 30)


def test_a_repeated_time_runs_once() -> None:
    first = next_run("01:30", ny(2026, 11, 1, 0, 0), NEW_YORK)
    assert utc(first) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first occurrence
    assert utc(next_run("01:30", first, NEW_YORK)) == ny(2026, 11, 2, 1, 30)
    # Started during the second pass of the repeated hour: today's run is past.
    second_pass = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST
    assert utc(next_run("01:30", second_pass, NEW_YORK)) == ny(2026, 11, 2, 1, 30)


def test_hourly_across_the_spring_gap_runs_once_at_the_jump() -> None:
    moments = runs("hourly", ny(2026, 3, 8, 0, 30), 4)
    assert [m.astimezone(UTC).hour for m in moments] == [6, 7, 8, 9]  # 01:00 EST, 03:00 EDT, 04:00, 05:00
    assert [m.hour for m in moments] == [1, 3, 4, 5]


def test_hourly_across_the_autumn_fold_runs_the_repeated_hour_once() -> None:
    moments = runs("hourly", ny(2026, 11, 1, 0, 30), 3)
    assert [m.astimezone(UTC).hour for m in moments] == [5, 7, 8]  # 01:00 EDT, 02:00 EST, 03:00 EST


def test_berlin_spring_gap() -> None:
    moment = next_run("02:15", datetime(2026, 3, 29, 0, 0, tzinfo=BERLIN), BERLIN)
    assert utc(moment) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST


def test_a_half_hour_gap() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 02:00 → 02:30 on 2026-10-04
    moment = next_run("02:10", datetime(2026, 10, 4, 0, 0, tzinfo=lord_howe), lord_howe)
    assert (moment.hour, moment.minute) == (2, 30)


def test_a_skipped_day() -> None:
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 did not exist there
    moment = next_run("03:00", datetime(2011, 12, 29, 12, 0, tzinfo=apia), apia)
    assert moment.date().isoformat() == "2011-12-31"
    assert moment.astimezone(UTC) == datetime(2011, 12, 30, 10, 0, tzinfo=UTC)  # the first moment of the 31st


def test_every_run_is_later_and_each_local_time_runs_once_a_day() -> None:
    """A year of 'every 6h' in New York: strictly increasing, four runs a day (the jump day too)."""
    moments = runs("every 6h", ny(2025, 12, 31, 23, 0), 4 * 365)
    assert all(utc(later) > utc(earlier) for earlier, later in itertools.pairwise(moments))
    per_day: dict[str, int] = {}
    for moment in moments:
        per_day[moment.date().isoformat()] = per_day.get(moment.date().isoformat(), 0) + 1
    assert len(per_day) == 365
    assert set(per_day.values()) == {4}


# --- catch-up ------------------------------------------------------------------------------------

def test_catch_up_when_never_or_older_than_a_period() -> None:
    daily: Schedule = parse_schedule("03:00")
    now = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert catch_up_due(daily, None, now)
    assert catch_up_due(daily, now - timedelta(hours=25), now)
    assert not catch_up_due(daily, now - timedelta(hours=23), now)
    assert catch_up_due(parse_schedule("every 6h"), now - timedelta(hours=7), now)
