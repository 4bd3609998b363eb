"""``ChangeNotifier``: tells sessions that a folder changed, at once for changes made in this
process and within a poll interval (0.25 s) for changes other processes commit (the index's
change feed, table ``mailbox_changes``: one query per poll per process, not per session).
"""

from __future__ import annotations

import asyncio

from hardmail.core.clock import Clock
from hardmail.store.ports_mailbox import MailboxIndex

POLL_SECONDS = 0.25


class Subscription:
    """``changed`` is set whenever the folder changes; the session clears it before it looks."""

    def __init__(self, notifier: ChangeNotifier, key: tuple[str, str]) -> None:
        self.changed = asyncio.Event()
        self._notifier = notifier
        self.key = key

    def close(self) -> None:
        raise NotImplementedError


class ChangeNotifier:
    def __init__(self, index: MailboxIndex, clock: Clock, *, poll_seconds: float = POLL_SECONDS) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def subscribe(self, account: str, folder: str) -> Subscription:
        raise NotImplementedError

    def notify_local(self, account: str, folder: str) -> None:
        """A change this process just committed (the store calls it)."""
        raise NotImplementedError
