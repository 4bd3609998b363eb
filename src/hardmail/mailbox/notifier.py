"""``ChangeNotifier``: tells sessions that a folder changed, at once for changes made in this
process (the store calls :meth:`ChangeNotifier.notify_local` after each commit) and within a poll
interval (0.25 s) for changes other processes commit: one query per poll per process, not per
session, reads the index's change feed (table ``mailbox_changes``) after the last id seen. Rows
older than :data:`KEEP_SECONDS` are pruned now and then.

A session subscribes to (account, folder) and waits on ``Subscription.changed``; it clears the
event before it looks at the folder, so a change that lands while it looks sets it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import UTC, datetime

from hardmail.core.clock import Clock
from hardmail.store.ports_mailbox import MailboxIndex

POLL_SECONDS = 0.25
KEEP_SECONDS = 3600.0
PRUNE_EVERY = 240  # polls (about a minute)
_log = logging.getLogger(__name__)


def _key(account: str, folder: str) -> tuple[str, str]:
    return account, "INBOX" if folder.upper() == "INBOX" else folder


class Subscription:
    """``changed`` is set whenever the folder changes; :meth:`close` ends the subscription."""

    def __init__(self, notifier: ChangeNotifier, key: tuple[str, str]) -> None:
        self.changed = asyncio.Event()
        self.key = key
        self._notifier = notifier

    def close(self) -> None:
        self._notifier._forget(self)


class ChangeNotifier:
    def __init__(self, index: MailboxIndex, clock: Clock, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._index = index
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._subscriptions: defaultdict[tuple[str, str], set[Subscription]] = defaultdict(set)
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start polling from the newest change (older ones are history)."""
        if self._task is None:
            self._last_id = await self._index.latest_change()
            self._task = asyncio.create_task(self._run(), name="mailbox-change-notifier")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def subscribe(self, account: str, folder: str) -> Subscription:
        subscription = Subscription(self, _key(account, folder))
        self._subscriptions[subscription.key].add(subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        found = self._subscriptions.get(subscription.key)
        if found is not None:
            found.discard(subscription)
            if not found:
                del self._subscriptions[subscription.key]

    def notify_local(self, account: str, folder: str) -> None:
        for subscription in self._subscriptions.get(_key(account, folder), ()):
            subscription.changed.set()

    @property
    def subscriber_count(self) -> int:
        return sum(len(found) for found in self._subscriptions.values())

    async def poll_once(self) -> int:
        """Read the feed once and wake the subscribers of every folder in it; returns how many rows."""
        rows = await self._index.changes_after(self._last_id)
        for row in rows:
            self._last_id = max(self._last_id, row.id)
            self.notify_local(row.account, row.folder)
        return len(rows)

    async def _run(self) -> None:
        polls = 0
        while True:
            try:
                while await self.poll_once() >= 1000:
                    pass  # a burst: catch up before sleeping
                polls += 1
                if polls % PRUNE_EVERY == 0:
                    before = datetime.fromtimestamp(self._clock.now() - KEEP_SECONDS, UTC)
                    await self._index.prune_changes(before)
            except Exception:  # the database is away for a moment: keep polling
                _log.warning("mailbox change feed poll failed", exc_info=True)
            await asyncio.sleep(self._poll_seconds)
