"""Contract: the SecurityStore (audit runs, sign-in sources, weekly-digest preferences, the
login-history feed), on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from hardmail.store import open_store
from hardmail.store.ports import NotFound, Store
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.ports_security import AuditRun

ALICE, BOB = "alice@example.org", "bob@example.org"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
IP, OTHER_IP = "192.0.2.7", "2001:db8::7"


@pytest.fixture
async def accounts(store: Store) -> tuple[str, str]:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        # PostgreSQL: these outlive the fixture's TRUNCATE of the account tables
        await conn.execute(text("DELETE FROM login_history"))
        await conn.execute(text("DELETE FROM audit_runs"))
    await store.add_domain("example.org")
    for address in (ALICE, BOB):
        await store.add_account(address, "$argon2id$x")
    return ALICE, BOB


def _run(target: str, minutes: int, score: int = 90) -> AuditRun:
    started = WHEN + timedelta(minutes=minutes)
    return AuditRun(0, started, started + timedelta(seconds=30), target, "cli", score, "low", '[{"id": "x"}]')


def _event(account: str, minutes: int, kind: str = "login", result: str = "success", ip: str = IP) -> LoginEvent:
    return LoginEvent(WHEN + timedelta(minutes=minutes), account, kind, result, "imap", "PLAIN", ip, "TLSv1.3", "")


# --- audit runs ---------------------------------------------------------------------------


async def test_audit_runs_are_saved_and_listed_newest_first(store: Store, accounts: object) -> None:
    first = await store.security.save_audit_run(_run("own", 0, score=70))
    second = await store.security.save_audit_run(_run("own", 60, score=95))
    other = await store.security.save_audit_run(_run("mx.example.net:25", 30))
    assert first < second and len({first, second, other}) == 3
    saved = await store.security.get_audit_run(first)
    assert saved == AuditRun(first, WHEN, WHEN + timedelta(seconds=30), "own", "cli", 70, "low", '[{"id": "x"}]')
    assert [r.id for r in await store.security.list_audit_runs()] == [second, other, first]
    assert [r.id for r in await store.security.list_audit_runs(limit=1)] == [second]
    assert [r.id for r in await store.security.list_audit_runs(target="own")] == [second, first]
    assert await store.security.get_audit_run(max(first, second, other) + 1) is None


async def test_pruning_keeps_the_newest_runs_of_each_target(store: Store, accounts: object) -> None:
    own = [await store.security.save_audit_run(_run("own", m)) for m in (0, 10, 20, 30)]
    other = [await store.security.save_audit_run(_run("other:25", m)) for m in (5, 15)]
    assert await store.security.prune_audit_runs(keep=2) == 2
    assert [r.id for r in await store.security.list_audit_runs()] == [own[3], own[2], other[1], other[0]]
    assert await store.security.prune_audit_runs(keep=2) == 0
    newer = await store.security.save_audit_run(_run("own", 40))
    assert newer > max(own + other)  # ids are never reused


# --- sign-in sources ------------------------------------------------------------------------


async def test_a_source_is_new_once_and_then_known(store: Store, accounts: object) -> None:
    assert await store.security.add_sign_in_source(ALICE, IP, WHEN)
    assert not await store.security.add_sign_in_source(ALICE, IP, WHEN + timedelta(days=1))
    assert await store.security.add_sign_in_source(ALICE, OTHER_IP, WHEN)
    assert await store.security.add_sign_in_source(BOB, IP, WHEN)  # per account
    assert await store.security.sign_in_sources(ALICE) == sorted([IP, OTHER_IP])
    assert await store.security.sign_in_sources(BOB) == [IP]


async def test_seeing_a_known_source_again_keeps_it_from_being_pruned(store: Store, accounts: object) -> None:
    await store.security.add_sign_in_source(ALICE, IP, WHEN)
    await store.security.add_sign_in_source(ALICE, OTHER_IP, WHEN)
    assert not await store.security.add_sign_in_source(ALICE, IP, WHEN + timedelta(days=10))
    assert await store.security.prune_sign_in_sources(WHEN + timedelta(days=5)) == 1
    assert await store.security.sign_in_sources(ALICE) == [IP]
    assert not await store.security.add_sign_in_source(ALICE, IP, WHEN)  # an older time moves nothing back
    assert await store.security.prune_sign_in_sources(WHEN + timedelta(days=5)) == 0


async def test_of_concurrent_first_sign_ins_exactly_one_is_new(
    store: Store, store_url: str, accounts: object
) -> None:
    second = await open_store(store_url)  # another engine: another server process
    try:
        results = await asyncio.gather(*(
            (store if n % 2 else second).security.add_sign_in_source(ALICE, IP, WHEN + timedelta(seconds=n))
            for n in range(12)))
    finally:
        await second.close()
    assert sorted(results) == [False] * 11 + [True]
    assert await store.security.sign_in_sources(ALICE) == [IP]


async def test_a_source_of_an_account_that_does_not_exist_is_not_recorded(store: Store, accounts: object) -> None:
    assert not await store.security.add_sign_in_source("nobody@example.org", IP, WHEN)
    assert await store.security.sign_in_sources("nobody@example.org") == []


async def test_removing_an_account_removes_its_sources_and_preferences(store: Store, accounts: object) -> None:
    await store.security.add_sign_in_source(ALICE, IP, WHEN)
    await store.security.add_sign_in_source(BOB, IP, WHEN)
    await store.security.set_weekly_digest(ALICE, True)
    await store.security.set_weekly_digest(BOB, True)
    await store.remove_account(ALICE)
    await store.add_account(ALICE, "$argon2id$new")  # the same address again: a new user
    assert await store.security.sign_in_sources(ALICE) == []
    assert await store.security.weekly_digest_accounts() == [BOB]
    assert await store.security.sign_in_sources(BOB) == [IP]
    assert await store.security.add_sign_in_source(ALICE, IP, WHEN)


# --- notice preferences ------------------------------------------------------------------------


async def test_the_weekly_digest_is_asked_for_and_given_up(store: Store, accounts: object) -> None:
    assert await store.security.weekly_digest_accounts() == []
    await store.security.set_weekly_digest(BOB, True)
    await store.security.set_weekly_digest(ALICE, True)
    await store.security.set_weekly_digest(ALICE, True)
    assert await store.security.weekly_digest_accounts() == [ALICE, BOB]
    await store.security.set_weekly_digest(BOB, False)
    assert await store.security.weekly_digest_accounts() == [ALICE]
    with pytest.raises(NotFound):
        await store.security.set_weekly_digest("nobody@example.org", True)


# --- the login-history feed ----------------------------------------------------------------------


async def test_the_feed_reads_login_history_oldest_first_after_a_cursor(store: Store, accounts: object) -> None:
    assert await store.security.latest_login_event_id() == 0
    assert await store.security.login_events_after(0) == []
    events = [_event(ALICE, 0), _event(BOB, 1, result="failure"), _event(ALICE, 2, kind="app-password-created",
                                                                            result="done")]
    for event in events:
        await store.credentials.append_login_event(event)
    feed = await store.security.login_events_after(0)
    assert [f.event for f in feed] == events
    assert [f.id for f in feed] == sorted(f.id for f in feed) and len({f.id for f in feed}) == 3
    assert await store.security.latest_login_event_id() == feed[-1].id
    assert [f.event for f in await store.security.login_events_after(0, limit=2)] == events[:2]
    assert [f.event for f in await store.security.login_events_after(feed[0].id)] == events[1:]
    assert await store.security.login_events_after(feed[-1].id) == []


async def test_the_events_of_an_account_between_two_times(store: Store, accounts: object) -> None:
    for event in (_event(ALICE, 0), _event(ALICE, 10), _event(BOB, 10), _event(ALICE, 20), _event(ALICE, 5)):
        await store.credentials.append_login_event(event)
    found = await store.security.login_events_between(ALICE, WHEN + timedelta(minutes=5), WHEN + timedelta(minutes=20))
    assert found == [_event(ALICE, 5), _event(ALICE, 10)]  # start included, end not; oldest first


async def test_the_last_successful_login_of_each_account(store: Store, accounts: object) -> None:
    for event in (_event(ALICE, 0), _event(ALICE, 30), _event(ALICE, 10), _event(ALICE, 60, result="failure"),
                  _event(ALICE, 90, kind="password-changed", result="success"), _event(BOB, 5, result="failure"),
                  _event("gone@example.org", 3)):
        await store.credentials.append_login_event(event)
    assert await store.security.last_successful_logins() == {
        ALICE: WHEN + timedelta(minutes=30), "gone@example.org": WHEN + timedelta(minutes=3)}
