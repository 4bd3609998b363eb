"""Retention: which archives keep_daily/keep_weekly/keep_monthly keep, chains, and bad archives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hardmail.ops.backup.retention import archives_to_delete, as_candidate, retention_plan, verify_state

START = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)  # a Thursday


def rec(name: str, at: datetime, *, chain: tuple[str, ...] = (), parent: str | None = None,
        ok: bool | None = True, kind: str = "full") -> dict[str, Any]:
    verify = None if ok is None else {"ok": ok, "at": at.isoformat(), "failures": [] if ok else ["x"]}
    return {"name": name, "kind": kind, "parent": parent, "chain": [*chain, name],
            "created_at": at.isoformat(), "verify": verify}


def daily_fulls(days: int, start: datetime = START) -> list[dict[str, Any]]:
    return [rec(f"d{i:03}", start + timedelta(days=i)) for i in range(days)]


def kept(records: list[dict[str, Any]], now: datetime, daily: int, weekly: int, monthly: int) -> set[str]:
    deleted = set(archives_to_delete(records, now, daily, weekly, monthly))
    assert deleted <= {r["name"] for r in records}
    return {r["name"] for r in records} - deleted


def test_daily_weekly_monthly_of_sixty_daily_fulls() -> None:
    records = daily_fulls(60)  # 2026-01-01 .. 2026-03-01
    now = START + timedelta(days=60)
    names = kept(records, now, 7, 4, 6)
    last_week = {f"d{i:03}" for i in range(53, 60)}  # 2026-02-23 .. 2026-03-01
    sundays = {"d059", "d052", "d045", "d038"}  # newest of ISO weeks 9, 8, 7, 6: Sundays 1 Mar, 22, 15, 8 Feb
    months = {"d059", "d058", "d030"}  # newest of March (1st), February (28th), January (31st)
    assert names == last_week | sundays | months


def test_the_deleted_ones_come_oldest_first() -> None:
    records = daily_fulls(10)
    deleted = archives_to_delete(records, START + timedelta(days=10), 2, 0, 0)
    assert deleted == [f"d{i:03}" for i in range(8)]


def test_days_without_archives_do_not_count() -> None:
    records = [rec(f"e{i}", START + timedelta(days=2 * i)) for i in range(6)]
    assert kept(records, START + timedelta(days=12), 3, 0, 0) == {"e3", "e4", "e5"}


def test_the_newest_of_a_day_is_kept() -> None:
    records = [rec("morning", START), rec("evening", START + timedelta(hours=12)),
               rec("next", START + timedelta(days=1))]
    assert kept(records, START + timedelta(days=2), 2, 0, 0) == {"evening", "next"}


def test_nothing_to_keep_still_keeps_the_newest_good_and_the_newest() -> None:
    records = [*daily_fulls(3), rec("bad", START + timedelta(days=5), ok=False)]
    plan = retention_plan(records, START + timedelta(days=6), 0, 0, 0)
    assert set(plan.keep) == {"d002", "bad"}
    assert plan.keep["d002"] == ("newest good",)
    assert plan.keep["bad"] == ("newest",)
    assert plan.delete == ("d000", "d001")


def test_a_bad_archive_is_not_the_kept_one_of_a_day_with_a_good_one() -> None:
    records = [rec("good", START), rec("bad", START + timedelta(hours=6), ok=False),
               rec("unverified", START + timedelta(hours=7), ok=None),
               rec("today", START + timedelta(days=1))]
    assert kept(records, START + timedelta(days=1, hours=1), 2, 0, 0) == {"good", "today"}


def test_unverified_is_preferred_to_bad_and_a_bad_only_day_keeps_its_newest() -> None:
    records = [rec("bad1", START, ok=False), rec("unverified", START + timedelta(hours=1), ok=None),
               rec("bad2", START + timedelta(hours=2), ok=False),
               rec("bad3", START + timedelta(days=1), ok=False),
               rec("bad4", START + timedelta(days=1, hours=1), ok=False),
               rec("good", START + timedelta(days=2))]
    assert kept(records, START + timedelta(days=3), 3, 0, 0) == {"unverified", "bad4", "good"}


def test_the_newest_good_survives_a_run_of_bad_days() -> None:
    records = [rec("old-good", START), *[rec(f"bad{i}", START + timedelta(days=1 + i), ok=False) for i in range(10)]]
    names = kept(records, START + timedelta(days=12), 7, 0, 0)
    assert "old-good" in names
    assert names == {"old-good", *[f"bad{i}" for i in range(3, 10)]}


def test_an_incremental_keeps_its_chain() -> None:
    """Fulls every 7 days, incrementals between; keeping the last 3 days keeps their full and the
    incrementals between it and them."""
    records: list[dict[str, Any]] = []
    chain: tuple[str, ...] = ()
    for i in range(21):
        at = START + timedelta(days=i)
        if i % 7 == 0:
            records.append(rec(f"f{i}", at))
            chain = (f"f{i}",)
        else:
            name = f"i{i}"
            records.append(rec(name, at, chain=chain, parent=chain[-1], kind="incremental"))
            chain = (*chain, name)
    plan = retention_plan(records, START + timedelta(days=21), 3, 0, 0)
    assert set(plan.keep) == {"f14", *[f"i{i}" for i in range(15, 21)]}
    assert plan.keep["i16"][0].startswith("chain of i")
    assert plan.keep["i18"] == ("daily",)
    assert plan.keep["i20"][0] in ("newest", "daily")
    assert "f7" in plan.delete and "i13" in plan.delete


def test_a_parent_link_alone_is_followed() -> None:
    records = [rec("full", START), {"name": "incr", "parent": "full", "chain": [],
                                   "created_at": (START + timedelta(days=3)).isoformat(), "verify": {"ok": True}}]
    assert kept(records, START + timedelta(days=4), 1, 0, 0) == {"full", "incr"}


def test_an_archive_dated_after_now_is_kept() -> None:
    records = [*daily_fulls(5), rec("future", START + timedelta(days=30))]
    names = kept(records, START + timedelta(days=5), 1, 0, 0)
    assert "future" in names
    assert "d004" in names  # the future one does not take the slot of the newest day
    assert len(names) == 2


def test_days_are_those_of_the_local_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    late = datetime(2026, 1, 5, 22, 30, tzinfo=UTC)  # 23:30 in Berlin on the 5th
    later = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)  # 00:30 in Berlin on the 6th
    records = [rec("a", late), rec("b", later), rec("c", datetime(2026, 1, 6, 12, tzinfo=UTC))]
    assert kept(records, datetime(2026, 1, 7, tzinfo=berlin), 2, 0, 0) == {"a", "c"}
    assert kept(records, datetime(2026, 1, 7, tzinfo=UTC), 2, 0, 0) == {"b", "c"}


def test_iso_weeks_span_the_new_year() -> None:
    # 2026-12-31 (Thursday) and 2027-01-03 (Sunday) are both in ISO week 53 of 2026.
    records = [rec("dec31", datetime(2026, 12, 31, 3, tzinfo=UTC)), rec("jan3", datetime(2027, 1, 3, 3, tzinfo=UTC)),
               rec("jan4", datetime(2027, 1, 4, 3, tzinfo=UTC))]
    assert kept(records, datetime(2027, 1, 5, tzinfo=UTC), 0, 2, 0) == {"jan3", "jan4"}
    assert kept(records, datetime(2027, 1, 5, tzinfo=UTC), 0, 0, 2) == {"dec31", "jan4"}


def test_records_as_objects() -> None:
    @dataclass
    class Verify:
        ok: bool

    @dataclass
    class Record:
        name: str
        created_at: str
        chain: tuple[str, ...]
        parent: str | None
        verify: Verify | None

    records = [Record("x", "2026-01-01T03:00:00Z", ("x",), None, Verify(True)),
               Record("y", "2026-01-02T03:00:00+00:00", ("y",), None, Verify(False))]
    assert archives_to_delete(records, datetime(2026, 1, 3, tzinfo=UTC), 0, 0, 0) == []
    assert as_candidate(records[0]).state == "good"
    assert as_candidate(records[1]).state == "bad"
    assert as_candidate(records[0]).chain == ()


def test_verify_states() -> None:
    assert verify_state(None) == "unverified"
    assert verify_state({"ok": None}) == "unverified"
    assert verify_state({"ok": True}) == "good"
    assert verify_state({"ok": False, "failures": ["a"]}) == "bad"


def test_an_empty_catalog_deletes_nothing_and_now_must_be_aware() -> None:
    assert archives_to_delete([], START, 7, 4, 6) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        archives_to_delete([], datetime(2026, 1, 1), 7, 4, 6)
