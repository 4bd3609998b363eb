"""The authenticated sessions of this server process, by account, and the account-change poll that
ends them when their account is disabled, frozen or removed, its password is changed, or the app
password they logged in with is revoked.

Every change of that kind writes an ``account_changes`` row in its own transaction, whichever
process made it (the CLI, another worker). Each server process polls those rows by id (one
indexed query every ``auth.session_check_seconds``); for each change it drops the look-up cache's
entries of the account and ends the affected sessions with ``421 4.7.0``: at once when the session
waits for its client (also in the middle of DATA: that message is not accepted), else as soon as
the command in progress is answered. Two checks close the gap between a change and the next
poll: ``MAIL`` is refused for a session already ended, and a message is accepted only after a poll
of its own (coalesced between the sessions that ask together) found its session still valid;
while the changes cannot be read (the database is unavailable) such a message gets ``451 4.3.0``,
and the poll goes on (logged when the outage begins, every minute of it, and when it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from hardmail.core.address import Address
from hardmail.core.clock import Clock
from hardmail.core.replies import Reply
from hardmail.ops.log import log_event
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from hardmail.store.ports import (
    CHANGE_APP_PASSWORD_REVOKED,
    CHANGE_DISABLED,
    CHANGE_FROZEN,
    CHANGE_MUST_CHANGE,
    CHANGE_PASSWORD,
    CHANGE_REMOVED,
    CHANGE_TWO_FACTOR_ON,
    AccountChange,
    Store,
)

# RFC 5321 3.8 / 4.2.5: 421 closes the channel. No reason: the client (maybe an attacker holding a
# stolen session) learns only that it must log in again.
SESSION_ENDED = Reply(421, "4.7.0", "Your session has ended; please sign in again")
# The changes could not be read (the database is unavailable): a message of an authenticated
# session is not accepted unchecked; the client tries again later (RFC 5321 4.2.5).
CHECK_UNAVAILABLE = Reply(451, "4.3.0", "Temporary failure checking your session; try again later")
RECENT_CHANGES = 1024  # changes kept for sessions whose login was under way while they were applied
BATCH = 1000  # changes read per query
GAP_SECONDS = 10.0  # how long a missing id is looked for (a PostgreSQL transaction committing late)
PRUNE_EVERY = 600.0  # seconds between two prunes of old change rows
KEEP_CHANGES = timedelta(hours=1)


class Endable(Protocol):
    def end_session(self, reply: Reply) -> None:
        """Send ``reply`` and close, now or after the command in progress."""
        ...


@dataclass(eq=False)
class AuthenticatedSession:
    session_id: str
    account: str  # in lookup form
    via: str  # "password", "scram" or "app-password"
    app_password_id: int | None
    target: Endable
    ended: bool = False


def ends_session(change: AccountChange, session: AuthenticatedSession) -> bool:
    """Whether ``change`` ends ``session`` (of the same account): disabled, frozen or removed ends
    every session; a new password ends those that logged in with the old one (password or SCRAM),
    and so does turning TOTP on or requiring a new password (the main password alone would be
    refused now); a revoked app password ends those that logged in with it."""
    if change.kind in (CHANGE_DISABLED, CHANGE_FROZEN, CHANGE_REMOVED):
        return True
    if change.kind in (CHANGE_PASSWORD, CHANGE_TWO_FACTOR_ON, CHANGE_MUST_CHANGE):
        return session.via != "app-password"
    if change.kind == CHANGE_APP_PASSWORD_REVOKED:
        return session.via == "app-password" and session.app_password_id == change.credential_id
    return False  # enabled, unfrozen: nothing to end


class SessionRegistry:
    """The authenticated sessions of this process: filled at a successful AUTH, emptied at
    disconnect. A login that was under way while changes were applied gets them applied too when
    it registers (``login_started`` marked where it began, right after a poll: changes made before
    the login are not applied to it, its look-ups saw them)."""

    def __init__(self) -> None:
        self._by_id: dict[str, AuthenticatedSession] = {}
        self._by_account: dict[str, dict[str, AuthenticatedSession]] = {}
        self._applied = 0  # how many changes were applied so far
        self._recent: deque[tuple[int, AccountChange]] = deque(maxlen=RECENT_CHANGES)
        self._login_marks: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def login_started(self, session_id: str) -> None:
        """A login begins: changes applied from now on will also apply to it once it succeeds."""
        self._login_marks.setdefault(session_id, self._applied)

    def login_marked(self, session_id: str) -> bool:
        return session_id in self._login_marks

    def login_failed(self, session_id: str) -> None:
        self._login_marks.pop(session_id, None)

    def add(self, session: AuthenticatedSession) -> None:
        mark = self._login_marks.pop(session.session_id, self._applied)
        self.remove(session.session_id)  # a login again (after STARTTLS): the new account only
        self._by_id[session.session_id] = session
        self._by_account.setdefault(session.account, {})[session.session_id] = session
        for number, change in self._recent:
            if number > mark and change.account == session.account:
                self._apply_to(change, session)

    def remove(self, session_id: str) -> None:
        self._login_marks.pop(session_id, None)
        session = self._by_id.pop(session_id, None)
        if session is None:
            return
        of_account = self._by_account.get(session.account, {})
        of_account.pop(session_id, None)
        if not of_account:
            self._by_account.pop(session.account, None)

    def is_ended(self, session_id: str) -> bool:
        session = self._by_id.get(session_id)
        return session is not None and session.ended

    def is_registered(self, session_id: str) -> bool:
        return session_id in self._by_id

    def apply(self, change: AccountChange) -> int:
        """End the sessions ``change`` ends; how many."""
        self._applied += 1
        self._recent.append((self._applied, change))
        sessions = list(self._by_account.get(change.account, {}).values())
        return sum(self._apply_to(change, session) for session in sessions)

    def _apply_to(self, change: AccountChange, session: AuthenticatedSession) -> bool:
        if session.ended or not ends_session(change, session):
            return False
        session.ended = True  # first: MAIL and the message check refuse it whatever happens below
        try:
            session.target.end_session(SESSION_ENDED)
        except Exception as exc:  # one broken connection must not keep the others of the account open
            log_event("auth.session_end_error", level="error", session=session.session_id,
                      error=type(exc).__name__)
        return True


class AccountChangeMonitor:
    """Polls the store's account changes and applies each one (cache, sessions) in this process."""

    def __init__(self, store: Store, registry: SessionRegistry, clock: Clock, *, interval: float,
                 forget: Callable[[str], None] | None = None, prune: bool = False) -> None:
        self._store, self._registry, self._clock = store, registry, clock
        self._interval = interval
        self._forget = forget  # drops the look-up cache's entries of an account
        self._prune = prune
        self._last = 0  # the newest change id seen
        self._gaps: dict[int, float] = {}  # ids below _last not seen yet -> when first missed
        self._lock = asyncio.Lock()
        self._waiting: asyncio.Future[bool] | None = None  # the next poll, for callers that share it
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = float("-inf")  # the first poll prunes
        self._failures = 0  # polls failed in a row
        self.last_poll_ok = True

    async def start(self) -> None:
        """From the newest change on (older ones concern sessions of another run); then poll."""
        self._last = await self._store.latest_account_change()
        if self._interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_now()
                await self._prune_if_due()
            except Exception as exc:  # never let the poll stop: sessions would outlive their changes
                log_event("auth.change_poll_error", level="error", error=type(exc).__name__, detail=str(exc)[:300])
            await asyncio.sleep(self._interval)

    async def poll_now(self) -> bool:
        """One poll that begins after this call (callers arriving together share it); whether the
        changes could be read."""
        if self._waiting is not None:
            return await asyncio.shield(self._waiting)
        waiting = self._waiting = asyncio.get_running_loop().create_future()
        done = False
        try:
            async with self._lock:  # a poll in progress may have begun before our caller's change
                self._waiting = None
                await self._poll()
                done = self.last_poll_ok
        finally:  # a poll cut short (its caller cancelled) checked nothing for those sharing it
            self._waiting = None if self._waiting is waiting else self._waiting
            waiting.set_result(done)
        return done

    async def _poll(self) -> None:
        try:
            after = min(self._gaps) - 1 if self._gaps else self._last
            while True:
                changes = await self._store.account_changes_since(after, BATCH)
                for change in changes:
                    self._take(change)
                if len(changes) < BATCH:
                    break
                after = changes[-1].id  # the next page
        except Exception as exc:  # the store is down: sessions stay as they are until it is back
            self._failed(exc)
            return
        if self._failures:
            log_event("auth.change_poll_recovered", failures=self._failures)
        self._failures, self.last_poll_ok = 0, True
        now = self._clock.monotonic()
        self._gaps = {gap: since for gap, since in self._gaps.items() if now - since < GAP_SECONDS}

    def _failed(self, exc: Exception) -> None:
        """Log the first failure of an outage, then one line every 120 failed polls (a minute at
        the default interval), so that a long outage is seen without filling the log."""
        self._failures += 1
        self.last_poll_ok = False
        if self._failures % 120 == 1:
            log_event("auth.change_poll_error", level="error", error=type(exc).__name__, detail=str(exc)[:300],
                      failures=self._failures)

    def _take(self, change: AccountChange) -> None:
        """Apply a change seen for the first time; ids are remembered so none is applied twice.
        Ids may commit out of order (PostgreSQL sequences): one skipped over is looked for a while."""
        if change.id <= self._last and self._gaps.pop(change.id, None) is None:
            return  # seen before
        if change.id > self._last:
            now = self._clock.monotonic()
            for missing in range(self._last + 1, min(change.id, self._last + 1 + BATCH)):
                self._gaps[missing] = now
            self._last = change.id
        if self._forget is not None:
            with contextlib.suppress(Exception):  # a cache entry is dropped by its TTL anyway
                self._forget(change.account)
        ended = self._registry.apply(change)
        if ended:
            log_event("auth.sessions_ended", account=change.account, change=change.kind, sessions=ended)

    async def _prune_if_due(self) -> None:
        if not self._prune or self._clock.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = self._clock.monotonic()
        with contextlib.suppress(Exception):  # housekeeping: the next prune tries again
            await self._store.prune_account_changes(datetime.fromtimestamp(self._clock.now(), UTC) - KEEP_CHANGES)


class SessionCheckHook(SessionHook):
    """The checks sessions make against the registry: the start of a login is marked, MAIL is
    refused for an ended session, a message is accepted only after a fresh poll."""

    def __init__(self, registry: SessionRegistry, monitor: AccountChangeMonitor) -> None:
        self.registry = registry
        self.monitor = monitor

    async def before_auth(self, facts: SessionFacts, mechanism: str) -> Reply | None:
        if not self.registry.login_marked(facts.session_id):  # the first step of an exchange
            await self.monitor.poll_now()  # so that no change made before this login is applied to it
            self.registry.login_started(facts.session_id)
        return None

    async def after_auth(self, facts: SessionFacts, username: str, success: bool, reason: str) -> Reply | None:
        if not success:
            self.registry.login_failed(facts.session_id)
        return None

    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        return SESSION_ENDED if self.registry.is_ended(facts.session_id) else None

    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        if not self.registry.is_registered(facts.session_id):
            return None  # not authenticated: nothing to re-check
        checked = await self.monitor.poll_now()
        if self.registry.is_ended(facts.session_id):
            return MessageDecision(reply=SESSION_ENDED)
        return None if checked else MessageDecision(reply=CHECK_UNAVAILABLE)

    async def close(self) -> None:
        await self.monitor.close()
