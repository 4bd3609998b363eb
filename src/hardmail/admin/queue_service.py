"""Queue use-cases for admins (CLI today, HTTP API later): list, show, retry, hold, release, delete, bounce.

A running server picks changes up at its next look at the queue (``queue.poll_interval`` at most).
"""

from __future__ import annotations

from hardmail.core.clock import Clock
from hardmail.delivery.assembly import DeliveryServices
from hardmail.delivery.notices import report_for
from hardmail.delivery.queue import QueueNotFound
from hardmail.store.ports import NotFound
from hardmail.store.ports_queue import QueueEntry, RecipientOutcome

ADMIN_BOUNCE_TEXT = "5.0.0 returned to the sender by the mail administrator"


class QueueAdmin:
    def __init__(self, services: DeliveryServices, clock: Clock) -> None:
        self.queue = services.queue
        self.notices = services.notices
        self.store = services.queue.store
        self.clock = clock

    async def list(self) -> list[QueueEntry]:
        return await self.store.list_queued()

    async def show(self, queue_id: str) -> tuple[QueueEntry, bytes]:
        """The entry and its message's header block."""
        entry = await self.queue.get(queue_id)
        try:
            data = await self.queue.message(queue_id)
        except QueueNotFound:
            data = b""
        return entry, data.split(b"\r\n\r\n", 1)[0]

    async def retry(self, queue_id: str | None) -> int:
        """Make one message (or all when None) due now; returns how many."""
        if queue_id is not None:
            await self.queue.get(queue_id)
        return await self.store.reschedule(queue_id, self.clock.now())

    async def hold(self, queue_id: str) -> None:
        await self._set_held(queue_id, True)

    async def release(self, queue_id: str) -> None:
        await self._set_held(queue_id, False)

    async def _set_held(self, queue_id: str, held: bool) -> None:
        try:
            await self.store.set_held(queue_id, held)
        except NotFound:
            raise QueueNotFound(f"no queued message with id {queue_id}") from None

    async def delete(self, queue_id: str) -> None:
        """Remove without telling the sender."""
        await self.queue.get(queue_id)
        await self.queue.remove(queue_id)

    async def bounce(self, queue_id: str) -> str | None:
        """Fail every pending recipient, send the sender a "failed" notice, remove the message."""
        entry = await self.queue.get(queue_id)
        now = self.clock.now()
        outcomes = [RecipientOutcome(r.address, "failed", None, ADMIN_BOUNCE_TEXT) for r in entry.pending]
        await self.store.record_outcomes(queue_id, outcomes, now)
        where = None
        if outcomes:
            original = await self.queue.message(queue_id)
            reports = [report_for(o, "failed", now, "5.0.0") for o in outcomes]
            where = await self.notices.send(entry, reports, original)
        await self.queue.remove(queue_id)
        return where
