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
        self._generations: dict[tuple[str, str], int] = {}  # only of folders that have subscribers
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
                self._generations.pop(subscription.key, None)

    def notify_local(self, account: str, folder: str) -> None:
        key = _key(account, folder)
        found = self._subscriptions.get(key)
        if not found:
            return
        self._generations[key] = self._generations.get(key, 0) + 1
        for subscription in found:
            subscription.changed.set()

    def generation(self, account: str, folder: str) -> int | None:
        """How many changes of a folder with subscribers this process has heard of (None for a folder
        without subscribers): two reads of the folder made under the same generation may share one
        look at the index, since a change after it started wakes the subscribers again."""
        key = _key(account, folder)
        return self._generations.get(key, 0) if key in self._subscriptions else None

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
        polls, failing = 0, False
        while True:
            try:
                while await self.poll_once() >= 1000:
                    pass  # a burst: catch up before sleeping
                polls += 1
                if polls % PRUNE_EVERY == 0:
                    before = datetime.fromtimestamp(self._clock.now() - KEEP_SECONDS, UTC)
                    await self._index.prune_changes(before)
                if failing:
                    _log.info("mailbox change feed readable again")
                failing = False
            except Exception:  # the database is away for a moment: keep polling, say so once
                if not failing:
                    _log.warning("mailbox change feed poll failed", exc_info=True)
                failing = True
            await asyncio.sleep(self._poll_seconds)
