"""The session registry and the account-change poll (``hardmail.server.sessions``), on a fake store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from hardmail.core.clock import FakeClock
from hardmail.core.replies import Reply
from hardmail.delivery.content import MessageContent
from hardmail.server.hooks import MessageFacts, SessionFacts
from hardmail.server.sessions import (
    CHECK_UNAVAILABLE,
    GAP_SECONDS,
    SESSION_ENDED,
    AccountChangeMonitor,
    AuthenticatedSession,
    SessionCheckHook,
    SessionRegistry,
    ends_session,
)
from hardmail.store.ports import (
    CHANGE_APP_PASSWORD_REVOKED,
    CHANGE_DISABLED,
    CHANGE_ENABLED,
    CHANGE_FROZEN,
    CHANGE_MUST_CHANGE,
    CHANGE_PASSWORD,
    CHANGE_REMOVED,
    CHANGE_TWO_FACTOR_ON,
    CHANGE_UNFROZEN,
    AccountChange,
)

ALICE = "alice@example.org"
AT = datetime(2026, 12, 3, tzinfo=UTC)


class Target:
    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def end_session(self, reply: Reply) -> None:
        self.replies.append(reply)


def _session(session_id: str = "s1", via: str = "password", app_password_id: int | None = None,
             account: str = ALICE) -> AuthenticatedSession:
    return AuthenticatedSession(session_id, account, via, app_password_id, Target())


def _change(change_id: int, kind: str, credential_id: int | None = None, account: str = ALICE) -> AccountChange:
    return AccountChange(change_id, account, kind, AT, credential_id)


@pytest.mark.parametrize(("kind", "via", "credential", "ends"), [
    (CHANGE_DISABLED, "app-password", None, True),
    (CHANGE_FROZEN, "scram", None, True),
    (CHANGE_REMOVED, "password", None, True),
    (CHANGE_PASSWORD, "password", None, True),
    (CHANGE_PASSWORD, "scram", None, True),
    (CHANGE_PASSWORD, "app-password", None, False),  # the app password still works
    (CHANGE_TWO_FACTOR_ON, "password", None, True),  # the main password alone no longer logs in
    (CHANGE_TWO_FACTOR_ON, "scram", None, True),
    (CHANGE_TWO_FACTOR_ON, "app-password", None, False),  # what 2FA accounts use for mail
    (CHANGE_MUST_CHANGE, "password", None, True),
    (CHANGE_MUST_CHANGE, "app-password", None, False),
    (CHANGE_APP_PASSWORD_REVOKED, "app-password", 7, True),
    (CHANGE_APP_PASSWORD_REVOKED, "app-password", 8, False),  # another app password
    (CHANGE_APP_PASSWORD_REVOKED, "password", 7, False),
    (CHANGE_ENABLED, "password", None, False),
    (CHANGE_UNFROZEN, "password", None, False),
])
def test_which_changes_end_which_sessions(kind: str, via: str, credential: int | None, ends: bool) -> None:
    assert ends_session(_change(1, kind, credential), _session(via=via, app_password_id=7)) is ends


def test_a_change_ends_the_accounts_sessions_once_and_no_others() -> None:
    registry = SessionRegistry()
    mine, other = _session("s1"), _session("s2", account="bob@example.org")
    registry.add(mine)
    registry.add(other)
    assert registry.apply(_change(1, CHANGE_DISABLED)) == 1
    assert registry.apply(_change(2, CHANGE_FROZEN)) == 0  # already ended
    assert isinstance(mine.target, Target) and mine.target.replies == [SESSION_ENDED]
    assert registry.is_ended("s1") and not registry.is_ended("s2")
    registry.remove("s1")
    assert not registry.is_registered("s1") and len(registry) == 1


def test_a_change_applied_while_a_login_was_under_way_applies_to_it() -> None:
    registry = SessionRegistry()
    registry.apply(_change(1, CHANGE_PASSWORD))  # before the login: its look-ups saw it
    registry.login_started("s1")
    registry.apply(_change(2, CHANGE_DISABLED))  # during the login: after its look-ups, maybe
    late = _session("s1")
    registry.add(late)
    assert registry.is_ended("s1")
    registry.login_started("s2")
    fresh = _session("s2")
    registry.add(fresh)
    assert not registry.is_ended("s2")


def test_a_failed_login_forgets_its_mark() -> None:
    registry = SessionRegistry()
    registry.login_started("s1")
    registry.login_failed("s1")
    assert not registry.login_marked("s1")


class FakeChanges:
    """The account-change part of a store; counts the queries."""

    def __init__(self) -> None:
        self.rows: list[AccountChange] = []
        self.queries = 0
        self.gate: asyncio.Event | None = None

    async def latest_account_change(self) -> int:
        return max((row.id for row in self.rows), default=0)

    async def account_changes_since(self, after_id: int, limit: int = 1000) -> list[AccountChange]:
        self.queries += 1
        if self.gate is not None:
            await self.gate.wait()
        return sorted((row for row in self.rows if row.id > after_id), key=lambda row: row.id)[:limit]

    async def prune_account_changes(self, before: datetime) -> int:
        return 0


def _monitor(store: FakeChanges, registry: SessionRegistry, clock: FakeClock,
             forgotten: list[str] | None = None) -> AccountChangeMonitor:
    fake: Any = store
    return AccountChangeMonitor(fake, registry, clock, interval=0,
                                forget=forgotten.append if forgotten is not None else None)


async def test_the_poll_starts_from_the_newest_change_and_drops_the_cache_entries() -> None:
    store, registry, clock, forgotten = FakeChanges(), SessionRegistry(), FakeClock(), []
    store.rows.append(_change(1, CHANGE_DISABLED))  # before the start: not this run's business
    monitor = _monitor(store, registry, clock, forgotten)
    await monitor.start()
    session = _session()
    registry.add(session)
    await monitor.poll_now()
    assert not registry.is_ended("s1") and forgotten == []
    store.rows.append(_change(2, CHANGE_FROZEN))
    await monitor.poll_now()
    assert registry.is_ended("s1") and forgotten == [ALICE]


async def test_a_change_that_commits_after_a_newer_one_is_still_applied_once() -> None:
    store, registry, clock = FakeChanges(), SessionRegistry(), FakeClock()
    monitor = _monitor(store, registry, clock)
    await monitor.start()
    registry.add(_session("s1", via="app-password", app_password_id=5))
    store.rows.append(_change(2, CHANGE_PASSWORD))  # id 1 is still being committed
    await monitor.poll_now()
    assert not registry.is_ended("s1")
    store.rows.append(_change(1, CHANGE_APP_PASSWORD_REVOKED, 5))
    await monitor.poll_now()
    assert registry.is_ended("s1")
    registry.add(_session("s2", via="password"))  # a new login: id 2 is not applied again
    await monitor.poll_now()
    assert not registry.is_ended("s2")


async def test_a_missing_id_is_looked_for_only_a_while() -> None:
    store, registry, clock = FakeChanges(), SessionRegistry(), FakeClock()
    monitor = _monitor(store, registry, clock)
    await monitor.start()
    store.rows.append(_change(3, CHANGE_ENABLED))
    await monitor.poll_now()
    clock.advance(GAP_SECONDS + 1)
    await monitor.poll_now()  # ids 1 and 2 given up (rolled back)
    registry.add(_session())
    store.rows.append(_change(1, CHANGE_DISABLED))  # cannot happen after a rollback; shows it is not read
    await monitor.poll_now()
    assert not registry.is_ended("s1")


async def test_callers_that_poll_together_share_one_query_that_began_after_them() -> None:
    store, registry, clock = FakeChanges(), SessionRegistry(), FakeClock()
    monitor = _monitor(store, registry, clock)
    await monitor.start()
    store.gate = asyncio.Event()
    running = asyncio.ensure_future(monitor.poll_now())  # a poll already in progress
    await asyncio.sleep(0)
    assert store.queries == 1
    waiting = [asyncio.ensure_future(monitor.poll_now()) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    await asyncio.gather(running, *waiting)
    assert store.queries == 2  # the one in progress, and one more for the five that came after it


async def test_many_changes_are_read_page_by_page() -> None:
    store, registry, clock = FakeChanges(), SessionRegistry(), FakeClock()
    monitor = _monitor(store, registry, clock)
    await monitor.start()
    store.rows.extend(_change(n, CHANGE_ENABLED, account=f"u{n}@example.org") for n in range(1, 2500))
    store.rows.append(_change(2500, CHANGE_DISABLED))
    registry.add(_session())
    await monitor.poll_now()
    assert registry.is_ended("s1") and store.queries == 3


class Broken(Target):
    def end_session(self, reply: Reply) -> None:
        raise ConnectionResetError("the transport went away")


def test_a_session_that_cannot_be_ended_does_not_keep_the_others_open() -> None:
    registry = SessionRegistry()
    broken = AuthenticatedSession("s1", ALICE, "password", None, Broken())
    registry.add(broken)
    registry.add(_session("s2"))
    assert registry.apply(_change(1, CHANGE_DISABLED)) == 2
    assert registry.is_ended("s1") and registry.is_ended("s2")  # s1 is refused MAIL and messages all the same


class Flaky(FakeChanges):
    """Unavailable while ``down``; every query is announced on ``queried``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.queried: asyncio.Queue[bool] = asyncio.Queue()

    async def account_changes_since(self, after_id: int, limit: int = 1000) -> list[AccountChange]:
        self.queried.put_nowait(self.down)
        if self.down:
            raise ConnectionRefusedError("database unavailable")
        return await super().account_changes_since(after_id, limit)


async def test_the_poll_goes_on_and_logs_while_the_database_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    store, registry = Flaky(), SessionRegistry()
    fake: Any = store
    monitor = AccountChangeMonitor(fake, registry, FakeClock(), interval=0.001)
    registry.add(_session())
    store.down = True
    await monitor.start()
    try:
        assert await store.queried.get() is True
        assert await store.queried.get() is True  # the task polls again after a failure
        store.down = False
        store.rows.append(_change(1, CHANGE_DISABLED))
        while await store.queried.get():
            pass
        await monitor.poll_now()
        assert registry.is_ended("s1")
    finally:
        await monitor.close()
    logged = caplog.text
    assert "auth.change_poll_error" in logged and "auth.change_poll_recovered" in logged


async def test_a_message_is_not_accepted_unchecked_while_the_changes_cannot_be_read() -> None:
    store, registry = Flaky(), SessionRegistry()
    fake: Any = store
    monitor = AccountChangeMonitor(fake, registry, FakeClock(), interval=0)
    await monitor.start()
    hook = SessionCheckHook(registry, monitor)
    registry.add(_session())
    facts = SessionFacts(session_id="s1", listener="submission", peer_ip="127.0.0.1", peer_port=1, helo="x",
                         tls=None, account=ALICE)
    message = MessageFacts(sender=ALICE, recipients=("bob@example.org",), mailboxes=(), remote=(),
                           content=MessageContent.in_memory(b"x"), size=1)
    store.down = True
    refused = await hook.on_message(facts, message)
    assert refused is not None and refused.reply == CHECK_UNAVAILABLE and refused.reply.code == 451
    store.down = False
    assert await hook.on_message(facts, message) is None


async def test_callers_sharing_a_poll_that_was_cut_short_are_told_nothing_was_checked() -> None:
    store, registry, clock = FakeChanges(), SessionRegistry(), FakeClock()
    monitor = _monitor(store, registry, clock)
    await monitor.start()
    store.gate = asyncio.Event()
    running = asyncio.ensure_future(monitor.poll_now())
    await asyncio.sleep(0)
    first_waiter = asyncio.ensure_future(monitor.poll_now())  # shares the poll that waits for the lock
    sharing = asyncio.ensure_future(monitor.poll_now())
    await asyncio.sleep(0)
    first_waiter.cancel()  # e.g. its session cancelled at shutdown, while its poll waited
    await asyncio.sleep(0)
    store.gate.set()
    assert await running is True
    assert await sharing is False
