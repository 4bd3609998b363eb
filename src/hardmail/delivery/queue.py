"""The outbound queue as one service: a durable spool file plus a store row per message.

:meth:`DeliveryQueue.enqueue` returns only after the message and its envelope are fsync'd in the
spool and the row (sender, recipients with their state, schedule) is committed, so a 250 sent
after it loses nothing. Removal deletes the spool files first and the row last, so a crash in
between leaves a row without files (dropped by :meth:`reconcile`), never files that would be sent
again. :meth:`reconcile` also restores rows for complete spool entries that have none (a database
that lost its last commits), preferring a duplicate over a lost message (RFC 5321 6.1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

from hardmail.core.clock import Clock
from hardmail.delivery.dsn import DsnRequest
from hardmail.delivery.durable import Chunks
from hardmail.delivery.spool import OutboundSpool, QueueIdNotFound, SpoolEntry
from hardmail.ops.log import log_event
from hardmail.store.ports import AlreadyExists, NotFound
from hardmail.store.ports_queue import QueueEntry, QueueRecipient, QueueStore


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


DSN_META = "dsn"  # spool meta key of the sender's DSN request (RFC 3461), kept for reconcile


def new_entry(spooled: SpoolEntry, now: float) -> QueueEntry:
    """The row for a freshly spooled message: every recipient pending, due at once, with its DSN request."""
    dsn = DsnRequest.from_json(spooled.meta.get(DSN_META, "{}"))
    recipients = []
    for address in dict.fromkeys(spooled.recipients):
        asked = dsn.for_recipient(address)
        recipients.append(QueueRecipient(address, domain_of(address), notify=asked.notify, orcpt=asked.orcpt))
    return QueueEntry(
        queue_id=spooled.queue_id, sender=spooled.sender, recipients=tuple(recipients),
        size=spooled.size, origin_account=spooled.origin_account, created_at=now, next_attempt_at=now,
        ret=dsn.ret, envid=dsn.envid,
    )


class QueueNotFound(LookupError):
    """No queued message has that id; the text is safe to show."""


class DeliveryQueue:
    def __init__(self, store: QueueStore, spool: OutboundSpool, clock: Clock) -> None:
        self.store = store
        self.spool = spool
        self.clock = clock
        self._listeners: list[Callable[[], None]] = []

    def on_enqueue(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each enqueue (the delivery runner wakes up)."""
        self._listeners.append(callback)

    async def enqueue(self, sender: str, recipients: Sequence[str], message: Chunks, *,
                      origin_account: str | None, queue_id: str | None = None,
                      meta: Mapping[str, str] | None = None, notify: bool = True,
                      dsn: DsnRequest | None = None) -> str:
        """Spool the message and commit its row; returns the queue id once both are durable.

        ``notify=False`` leaves waking the runner to the caller (:meth:`notify`), for a caller that
        may still take the message back. ``dsn`` is the sender's DSN request (RFC 3461).
        """
        if dsn is not None:
            meta = {**(meta or {}), DSN_META: dsn.to_json()}
        queue_id = await asyncio.to_thread(self.spool.enqueue, sender, list(recipients), message,
                                           origin_account=origin_account, meta=meta, queue_id=queue_id)
        try:
            spooled = await asyncio.to_thread(self.spool.entry, queue_id)  # not the message: it may be big
            await self.store.add_queued(new_entry(spooled, self.clock.now()))
        except BaseException:
            await asyncio.to_thread(self.spool.remove, queue_id)
            raise
        if notify:
            self.notify()
        return queue_id

    def notify(self) -> None:
        for callback in self._listeners:
            callback()

    async def message(self, queue_id: str) -> bytes:
        try:
            _, data = await asyncio.to_thread(self.spool.load, queue_id)
        except QueueIdNotFound:
            raise QueueNotFound(f"the spool file of {queue_id} is missing") from None
        return data

    async def get(self, queue_id: str) -> QueueEntry:
        entry = await self.store.get_queued(queue_id)
        if entry is None:
            raise QueueNotFound(f"no queued message with id {queue_id}")
        return entry

    async def remove(self, queue_id: str) -> None:
        """Files first, then the row (see the module docstring); idempotent."""
        await asyncio.to_thread(self.spool.remove, queue_id)
        with contextlib.suppress(NotFound):
            await self.store.remove_queued(queue_id)

    async def reconcile(self) -> tuple[list[str], list[str]]:
        """(ids whose row was restored from the spool, ids whose row was dropped for lack of files)."""
        spooled = {entry.queue_id: entry for entry in await asyncio.to_thread(self.spool.list)}
        rows = {entry.queue_id for entry in await self.store.list_queued()}
        restored = []
        for queue_id in sorted(spooled.keys() - rows):
            try:
                await self.store.add_queued(new_entry(spooled[queue_id], spooled[queue_id].created_at))
                restored.append(queue_id)
            except AlreadyExists:
                continue
        dropped = sorted(rows - spooled.keys())
        for queue_id in dropped:
            await self.store.remove_queued(queue_id)
        for queue_id in restored:
            log_event("queue.reconcile", level="warning", queue_id=queue_id, action="row restored from spool")
        for queue_id in dropped:
            log_event("queue.reconcile", level="warning", queue_id=queue_id, action="row without spool file dropped")
        return restored, dropped
