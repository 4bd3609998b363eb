"""The delivery runner: claims due queue entries, delivers them per destination domain, settles them.

Recipients of one domain share one attempt; each domain gets at most ``per_domain_connections``
connections and all domains together at most ``workers``; a connection carries up to
``messages_per_connection`` messages. Outcomes are stored right after the remote server answers.
After an attempt a message is removed (every recipient delivered, failed or expired, with a
"failed" notice for the failures), or rescheduled with backoff (and one "delayed" notice when it
has waited long enough). :meth:`DeliveryRunner.stop` stops claiming, lets in-flight work finish
for a grace period, then cancels it and releases the claims so the messages are due again.
Time comes from the injected clock; :meth:`run_once` lets tests drive one round without waiting.
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
from hardmail.store.ports_queue import QueueEntry, RecipientOutcome, RecipientState, Route


@dataclass
class _Batch:
    entries: dict[str, QueueEntry]
    data: dict[str, bytes] = field(default_factory=dict)
    results: dict[str, list[AttemptResult]] = field(default_factory=lambda: defaultdict(list))


def group_by_domain(entries: Sequence[QueueEntry], data: dict[str, bytes]) -> dict[str, list[OutgoingMessage]]:
    """One outgoing message per (entry, domain) holding that domain's pending recipients."""
    groups: dict[str, list[OutgoingMessage]] = defaultdict(list)
    for entry in entries:
        if entry.queue_id not in data:
            continue
        by_domain: dict[str, list[str]] = defaultdict(list)
        for recipient in entry.pending:
            by_domain[recipient.domain].append(recipient.address)
        for domain, addresses in by_domain.items():
            groups[domain].append(OutgoingMessage(entry.queue_id, entry.sender, tuple(addresses),
                                                  data[entry.queue_id]))
    return groups


def chunks(items: Sequence[OutgoingMessage], size: int) -> list[Sequence[OutgoingMessage]]:
    return [items[start:start + size] for start in range(0, len(items), size)]


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
            try:
                entries = await self._claim()
            except Exception as exc:  # the database is away: log and retry after the idle wait
                log_event("queue.claim", level="error", result="failure", detail=str(exc)[:300])
                entries = []
            if entries:
                task = asyncio.create_task(self._run_batch(entries))
                self._batches.add(task)
                task.add_done_callback(self._batches.discard)
                continue
            await self._idle()

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
        """Claim what is due now and deliver it completely; returns how many messages were tried."""
        entries = await self._claim()
        if entries:
            await self._run_batch(entries)
        return len(entries)

    async def _claim(self) -> list[QueueEntry]:
        now = self.clock.now()
        limit = self.section.workers * self.section.messages_per_connection
        return await self.store.claim_due(now, self.owner, now + self.section.claim_lease, limit)

    async def _run_batch(self, entries: list[QueueEntry]) -> None:
        batch = _Batch({entry.queue_id: entry for entry in entries})
        for entry in entries:
            await self._load(batch, entry)
        routes = await self.store.list_routes()
        groups = group_by_domain(entries, batch.data)
        await asyncio.gather(*(self._deliver_domain(batch, domain, messages, routes)
                               for domain, messages in groups.items()))
        for queue_id in batch.data:
            await self._settle(batch, queue_id)

    async def _load(self, batch: _Batch, entry: QueueEntry) -> None:
        try:
            batch.data[entry.queue_id] = await self.queue.message(entry.queue_id)
        except QueueNotFound as exc:
            log_event("queue.lost", level="error", queue_id=entry.queue_id, detail=str(exc))
            await self.queue.remove(entry.queue_id)

    async def _deliver_domain(self, batch: _Batch, domain: str, messages: list[OutgoingMessage],
                              routes: list[Route]) -> None:
        async def record(result: AttemptResult) -> None:
            await self._record(batch, domain, result)

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
                await self.deliverer.deliver(destination, group, record)

        groups = chunks(messages, self.section.messages_per_connection)
        await asyncio.gather(*(one_connection(group) for group in groups))

    async def _record(self, batch: _Batch, domain: str, result: AttemptResult) -> None:
        """Store the outcomes at once (a crash later never repeats these deliveries) and log the attempt."""
        queue_id = result.message.queue_id
        await self.store.record_outcomes(queue_id, result.outcomes, self.clock.now())
        batch.results[queue_id].append(result)
        counts = {state: sum(o.state == state for o in result.outcomes) for state in ("delivered", "pending", "failed")}
        first = result.outcomes[0] if result.outcomes else None
        log_event("delivery.attempt", queue_id=queue_id, domain=domain, mx=result.mx or None, ip=result.ip or None,
                  tls=result.tls, code=first.code if first else None, reply=result.summary[:500],
                  delivered=counts["delivered"], deferred=counts["pending"], failed=counts["failed"],
                  result="deferred" if counts["pending"] else ("delivered" if not counts["failed"] else "failed"))

    # settling a message after its attempt

    async def _settle(self, batch: _Batch, queue_id: str) -> None:
        entry = await self.store.get_queued(queue_id)
        if entry is None:
            return
        now = self.clock.now()
        failed = [o for result in batch.results[queue_id] for o in result.outcomes if o.state == "failed"]
        original = batch.data[queue_id]
        if failed:
            await self.notices.send(entry, [report_for(o, "failed", now, "5.0.0") for o in failed], original)
        if not entry.is_finished and is_expired(self.policy, entry.created_at, now):
            await self._expire(entry, original, now)
            entry = await self.queue.get(queue_id)
        if entry.is_finished:
            await self.queue.remove(queue_id)
            log_event("queue.done", queue_id=queue_id, attempts=entry.attempts + 1,
                      states=[f"{r.address}={r.state}" for r in entry.recipients])
            return
        await self._reschedule(entry, batch.results[queue_id], original, now)

    async def _expire(self, entry: QueueEntry, original: bytes, now: float) -> None:
        days = self.policy.give_up_after / 86400
        outcomes = [RecipientOutcome(r.address, "expired", r.last_code,
                                     f"5.4.7 gave up after {days:g} days; last error: {r.last_text}"[:1000],
                                     r.remote_mta) for r in entry.pending]
        await self.store.record_outcomes(entry.queue_id, outcomes, now)
        reports = [report_for(replace(o, code=None), "failed", now, "5.4.7") for o in outcomes]
        await self.notices.send(entry, reports, original)

    async def _reschedule(self, entry: QueueEntry, results: list[AttemptResult], original: bytes, now: float) -> None:
        notify = delay_notice_due(self.policy, entry.created_at, now, entry.delay_notified)
        if notify:
            until = expires_at(self.policy, entry.created_at)
            outcomes = [RecipientOutcome(r.address, "pending", r.last_code, r.last_text, r.remote_mta)
                        for r in entry.pending]
            await self.notices.send(entry, [report_for(o, "delayed", now, "4.0.0", until) for o in outcomes], original)
        errors = [r.summary for r in results if r.deferred]
        await self.store.finish_attempt(
            entry.queue_id, next_attempt_at=next_attempt_at(self.policy, now, entry.attempts + 1, self.rng),
            last_error="; ".join(errors)[:2000], delay_notified=entry.delay_notified or notify,
        )
