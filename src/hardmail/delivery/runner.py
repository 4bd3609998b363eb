"""The delivery runner: claims due queue entries, delivers them per destination domain, settles them.

Claims are taken in batches of at most ``messages_per_connection`` entries, and only while fewer
than ``workers`` batches are in flight, so a runner never holds more than it is working on. Message
bodies are read from the spool just before they are sent. Before each message is sent its claim is
renewed and its pending recipients are read again from the database; while a batch runs, a heartbeat
renews its claims every third of ``claim_lease``. Outcomes are stored right after the remote server
answers, and only while this runner still holds the claim. Recipients of one domain share one
attempt; each domain gets at most ``per_domain_connections`` connections and all domains together at
most ``workers``. An unexpected error is contained to its domain or message: it is logged and
counted as a temporary failure; a message whose spool envelope cannot be read is held (quarantined).

After an attempt the sender is told about every final recipient not told yet (the "notified" flag in
the database, so a crash never loses a bounce), then the message is removed when every recipient is
final, or rescheduled with backoff (and one "delayed" notice, recorded as sent before it is sent).
:meth:`DeliveryRunner.stop` stops claiming, lets in-flight work finish for a grace period, then
cancels it and releases the claims so the messages are due again. Time comes from the injected
clock; :meth:`run_once` lets tests drive the queue without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hardmail.config.schema import QueueSection
from hardmail.core.clock import Clock
from hardmail.delivery.dsn import RecipientDsn, wants_notice
from hardmail.delivery.notices import NoticeSender, report_for
from hardmail.delivery.outbound import AttemptResult, OutboundDeliverer, OutgoingMessage
from hardmail.delivery.queue import DeliveryQueue, QueueNotFound
from hardmail.delivery.retry import (
    Random,
    RetryPolicy,
    delay_notice_due,
    expires_at,
    is_expired,
    next_attempt_at,
)
from hardmail.delivery.routing import Router, RoutingError
from hardmail.ops.log import log_event
from hardmail.store.ports_queue import (
    QueueEntry,
    QueueRecipient,
    RecipientOutcome,
    RecipientState,
    Route,
)

INTERNAL_ERROR = "4.3.0 internal error during delivery"


@dataclass
class _Batch:
    entries: dict[str, QueueEntry]
    data: dict[str, bytes] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # removed, quarantined or no longer ours
    results: dict[str, list[AttemptResult]] = field(default_factory=lambda: defaultdict(list))


def outgoing(entry: QueueEntry, addresses: Sequence[str]) -> OutgoingMessage:
    """The message for some recipients of ``entry``, with their DSN request (data loaded later)."""
    by_address = {r.address: r for r in entry.recipients}
    dsn = {a: RecipientDsn(by_address[a].notify, by_address[a].orcpt) for a in addresses}
    return OutgoingMessage(entry.queue_id, entry.sender, tuple(addresses), ret=entry.ret, envid=entry.envid,
                           recipient_dsn=dsn)


def group_by_domain(entries: Sequence[QueueEntry]) -> dict[str, list[OutgoingMessage]]:
    """One outgoing message per (entry, domain) holding that domain's pending recipients."""
    groups: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for entry in entries:
        by_domain: dict[str, list[str]] = defaultdict(list)
        for recipient in entry.pending:
            by_domain[recipient.domain].append(recipient.address)
        for domain, addresses in by_domain.items():
            groups[domain].append(outgoing(entry, addresses))
    return groups


def chunks(items: Sequence[OutgoingMessage], size: int) -> list[Sequence[OutgoingMessage]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def as_outcome(recipient: QueueRecipient) -> RecipientOutcome:
    return RecipientOutcome(recipient.address, recipient.state, recipient.last_code, recipient.last_text,
                            recipient.remote_mta)


class DeliveryRunner:
    def __init__(self, queue: DeliveryQueue, router: Router, deliverer: OutboundDeliverer, notices: NoticeSender,
                 section: QueueSection, clock: Clock, owner: str, rng: Random = random.random) -> None:
        self.queue = queue
        self.store = queue.store
        self.router = router
        self.deliverer = deliverer
        self.notices = notices
        self.section = section
        self.policy = RetryPolicy.from_section(section)
        self.clock = clock
        self.owner = owner
        self.rng = rng
        self._workers = asyncio.Semaphore(section.workers)
        self._slots = asyncio.Semaphore(section.workers)  # batches in flight
        self._per_domain: dict[str, asyncio.Semaphore] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()

    # life-cycle

    async def start(self) -> None:
        released = await self.store.release_claims(self.owner)
        if released:
            log_event("queue.claims_released", owner=self.owner, count=released)
        self.queue.on_enqueue(self.wake)
        self._loop_task = asyncio.create_task(self._loop(), name="hardmail-delivery")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop claiming; wait up to ``grace`` seconds for in-flight deliveries; requeue the rest."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._batches:
            _, unfinished = await asyncio.wait(set(self._batches), timeout=grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        released = await self.store.release_claims(self.owner)
        log_event("queue.runner_stopped", requeued=released)

    async def _loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()  # claim only when a batch can start at once
            try:
                entries = [] if self._stopping else await self._claim()
            except Exception as exc:  # the database is away: log and retry after the idle wait
                log_event("queue.claim", level="error", result="failure", detail=str(exc)[:300])
                entries = []
            if entries:
                task = asyncio.create_task(self._run_batch(entries))
                self._batches.add(task)
                task.add_done_callback(self._batch_done)
                continue
            self._slots.release()
            if not self._stopping:
                await self._idle()

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()
        self._wake.set()

    async def _idle(self) -> None:
        """Wait for an enqueue, the next due time or the poll interval, whichever comes first."""
        wait = self.section.poll_interval
        with contextlib.suppress(Exception):
            due = await self.store.next_due_at()
            if due is not None:
                wait = min(wait, max(due - self.clock.now(), 0.05))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    # one round

    async def run_once(self) -> int:
        """Claim what is due now batch by batch and deliver it completely; returns how many messages were tried."""
        tried = 0
        while entries := await self._claim():
            await self._run_batch(entries)
            tried += len(entries)
        return tried

    async def _claim(self) -> list[QueueEntry]:
        now = self.clock.now()
        return await self.store.claim_due(now, self.owner, now + self.section.claim_lease,
                                          self.section.messages_per_connection)

    async def _run_batch(self, entries: list[QueueEntry]) -> None:
        batch = _Batch({entry.queue_id: entry for entry in entries})
        heartbeat = asyncio.create_task(self._heartbeat(batch))
        try:
            routes = await self.store.list_routes()
            groups = group_by_domain(entries)
            await asyncio.gather(*(self._deliver_domain(batch, domain, messages, routes)
                                   for domain, messages in groups.items()))
            for queue_id in batch.entries:
                if queue_id not in batch.gone:
                    await self._settle_isolated(batch, queue_id)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _heartbeat(self, batch: _Batch) -> None:
        """Renew the batch's claims every third of the lease while it is being delivered."""
        lease = self.section.claim_lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.store.renew_claim(list(batch.entries), self.owner, self.clock.now() + lease)
            except Exception as exc:
                log_event("queue.heartbeat", level="error", result="failure", detail=str(exc)[:300])

    async def _prepare(self, batch: _Batch, message: OutgoingMessage) -> OutgoingMessage | None:
        """Right before sending: renew the claim, re-read the pending recipients, load the message."""
        queue_id = message.queue_id
        held = await self.store.renew_claim([queue_id], self.owner, self.clock.now() + self.section.claim_lease)
        if queue_id not in held:
            log_event("queue.claim_lost", level="warning", queue_id=queue_id, owner=self.owner)
            batch.gone.add(queue_id)
            return None
        entry = await self.store.get_queued(queue_id)
        pending = {r.address for r in entry.pending} if entry is not None else set()
        recipients = tuple(r for r in message.recipients if r in pending)
        data = await self._data(batch, queue_id) if recipients else None
        if data is None:
            return None
        return replace(message, recipients=recipients, data=data)

    async def _data(self, batch: _Batch, queue_id: str) -> bytes | None:
        """The message bytes (read once per batch); a missing spool file drops the entry, a damaged
        envelope holds it."""
        if queue_id in batch.gone:
            return None
        if queue_id not in batch.data:
            try:
                batch.data[queue_id] = await self.queue.message(queue_id)
            except QueueNotFound as exc:
                log_event("queue.lost", level="error", queue_id=queue_id, detail=str(exc))
                await self.queue.remove(queue_id)
                batch.gone.add(queue_id)
                return None
            except Exception as exc:
                await self._quarantine(batch, queue_id, exc)
                return None
        return batch.data[queue_id]

    async def _quarantine(self, batch: _Batch, queue_id: str, exc: Exception) -> None:
        batch.gone.add(queue_id)
        log_event("queue.quarantined", level="error", queue_id=queue_id,
                  detail=f"spool entry cannot be read, message held: {exc}"[:300])
        await self.store.set_held(queue_id, True)

    async def _deliver_domain(self, batch: _Batch, domain: str, messages: list[OutgoingMessage],
                              routes: list[Route]) -> None:
        """One domain's delivery; an unexpected error defers its messages and leaves other domains alone."""
        try:
            await self._deliver_domain_unguarded(batch, domain, messages, routes)
        except Exception as exc:
            log_event("delivery.internal_error", level="error", domain=domain,
                      detail=f"{type(exc).__name__}: {exc}"[:300])
            for message in messages:
                outcomes = tuple(RecipientOutcome(r, "pending", None, INTERNAL_ERROR) for r in message.recipients)
                with contextlib.suppress(Exception):
                    await self._record(batch, domain, AttemptResult(message, outcomes, summary=INTERNAL_ERROR))

    async def _deliver_domain_unguarded(self, batch: _Batch, domain: str, messages: list[OutgoingMessage],
                                        routes: list[Route]) -> None:
        async def record(result: AttemptResult) -> None:
            await self._record(batch, domain, result)

        async def prepare(message: OutgoingMessage) -> OutgoingMessage | None:
            return await self._prepare(batch, message)

        try:
            destination = await self.router.destination(domain, routes)
        except RoutingError as exc:
            state: RecipientState = "pending" if exc.temporary else "failed"
            text = f"{exc.status} {exc.text}"
            for message in messages:
                outcomes = tuple(RecipientOutcome(r, state, None, text) for r in message.recipients)
                await record(AttemptResult(message, outcomes, summary=exc.text))
            return
        limit = self._per_domain.setdefault(domain, asyncio.Semaphore(self.section.per_domain_connections))

        async def one_connection(group: Sequence[OutgoingMessage]) -> None:
            async with limit, self._workers:
                await self.deliverer.deliver(destination, group, record, prepare)

        groups = chunks(messages, self.section.messages_per_connection)
        await asyncio.gather(*(one_connection(group) for group in groups))

    async def _record(self, batch: _Batch, domain: str, result: AttemptResult) -> None:
        """Store the outcomes at once (a crash later never repeats these deliveries) and log the attempt."""
        queue_id = result.message.queue_id
        if not await self.store.record_outcomes(queue_id, result.outcomes, self.clock.now(), self.owner):
            log_event("queue.claim_lost", level="warning", queue_id=queue_id, owner=self.owner)
            batch.gone.add(queue_id)
            return
        batch.results[queue_id].append(result)
        counts = {state: sum(o.state == state for o in result.outcomes) for state in ("delivered", "pending", "failed")}
        first = result.outcomes[0] if result.outcomes else None
        log_event("delivery.attempt", queue_id=queue_id, domain=domain, mx=result.mx or None, ip=result.ip or None,
                  tls=result.tls, code=first.code if first else None, reply=result.summary[:500],
                  delivered=counts["delivered"], deferred=counts["pending"], failed=counts["failed"],
                  result="deferred" if counts["pending"] else ("delivered" if not counts["failed"] else "failed"))

    # settling a message after its attempt

    async def _settle_isolated(self, batch: _Batch, queue_id: str) -> None:
        """:meth:`_settle`; an unexpected error is logged and the message retried later with backoff."""
        try:
            await self._settle(batch, queue_id)
        except Exception as exc:
            log_event("queue.settle", level="error", queue_id=queue_id, result="failure",
                      detail=f"{type(exc).__name__}: {exc}"[:300])
            entry = batch.entries[queue_id]
            now = self.clock.now()
            with contextlib.suppress(Exception):
                await self.store.finish_attempt(
                    queue_id, next_attempt_at=next_attempt_at(self.policy, now, entry.attempts + 1, self.rng),
                    last_error=INTERNAL_ERROR, delay_notified=entry.delay_notified, owner=self.owner)

    async def _settle(self, batch: _Batch, queue_id: str) -> None:
        entry = await self.store.get_queued(queue_id)
        if entry is None or entry.claimed_by != self.owner:
            return
        now = self.clock.now()
        if not entry.is_finished and is_expired(self.policy, entry.created_at, now):
            await self._expire(entry, now)
            entry = await self.queue.get(queue_id)
        await self._notify_final(batch, entry, now)
        if entry.is_finished:
            await self.queue.remove(queue_id)
            log_event("queue.done", queue_id=queue_id, attempts=entry.attempts + 1,
                      states=[f"{r.address}={r.state}" for r in entry.recipients])
            return
        await self._reschedule(batch, entry, batch.results[queue_id], now)

    async def _notify_final(self, batch: _Batch, entry: QueueEntry, now: float) -> None:
        """Tell the sender about final recipients not told yet, built from the database; then remember it."""
        told = [r for r in entry.recipients if not r.pending and not r.notified]
        if not told:
            return
        failed = [report_for(replace(as_outcome(r), code=None) if r.state == "expired" else as_outcome(r),
                             "failed", now, "5.4.7" if r.state == "expired" else "5.0.0")
                  for r in told if r.state in ("failed", "expired")]
        delivered = [report_for(as_outcome(r), "delivered", now, "2.0.0")
                     for r in told if r.state == "delivered" and wants_notice(r.notify, "delivered")]
        if failed or delivered:
            original = await self._data(batch, entry.queue_id) or b""
            await self.notices.send(entry, failed, original)
            await self.notices.send(entry, delivered, original)
        await self.store.mark_notified(entry.queue_id, [r.address for r in told])

    async def _expire(self, entry: QueueEntry, now: float) -> None:
        days = self.policy.give_up_after / 86400
        outcomes = [RecipientOutcome(r.address, "expired", r.last_code,
                                     f"5.4.7 gave up after {days:g} days; last error: {r.last_text}"[:1000],
                                     r.remote_mta) for r in entry.pending]
        await self.store.record_outcomes(entry.queue_id, outcomes, now, self.owner)

    async def _reschedule(self, batch: _Batch, entry: QueueEntry, results: list[AttemptResult], now: float) -> None:
        notify = delay_notice_due(self.policy, entry.created_at, now, entry.delay_notified)
        if notify:
            await self.store.set_delay_notified(entry.queue_id)  # recorded first: never sent twice
            until = expires_at(self.policy, entry.created_at)
            reports = [report_for(as_outcome(r), "delayed", now, "4.0.0", until) for r in entry.pending]
            await self.notices.send(entry, reports, await self._data(batch, entry.queue_id) or b"")
        errors = [r.summary for r in results if r.deferred]
        await self.store.finish_attempt(
            entry.queue_id, next_attempt_at=next_attempt_at(self.policy, now, entry.attempts + 1, self.rng),
            last_error="; ".join(errors)[:2000], delay_notified=entry.delay_notified or notify, owner=self.owner,
        )
