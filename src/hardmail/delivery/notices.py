"""Sending delivery status notifications to the original sender: into a local mailbox or the queue.

A notice for a sender in one of our domains goes straight to that account's Maildir (through its
aliases); any other goes into the outbound queue with the null reverse-path. A message whose
sender is null gets no notice at all (never a bounce for a bounce), and a recipient whose NOTIFY
(RFC 3461 4.1) does not ask for the report's kind is left out of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from hardmail.core.address import AddressError, parse_mailbox
from hardmail.core.clock import Clock
from hardmail.delivery.dsn import (
    Notice,
    RecipientReport,
    build_notice,
    should_notify,
    status_from_reply,
    wants_notice,
)
from hardmail.delivery.local_index import DeliveryIndexer, delivered_files
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.recipients import RecipientStore, resolve_recipient
from hardmail.ops.log import log_event
from hardmail.store.ports_queue import QueueEntry, RecipientOutcome

if TYPE_CHECKING:
    from hardmail.delivery.queue import DeliveryQueue

# (address, notice) -> True when delivered locally, False when the address is not ours
LocalDelivery = Callable[[str, bytes], Awaitable[bool]]


def report_for(outcome: RecipientOutcome, action: str, now: float, default: str,
               retry_until: float | None = None) -> RecipientReport:
    diagnostic = f"{outcome.code} {outcome.text}" if outcome.code else outcome.text
    return RecipientReport(
        address=outcome.address, action="failed" if action == "failed" else (
            "delivered" if action == "delivered" else "delayed"),
        status=status_from_reply(outcome.code, outcome.text, default), diagnostic=diagnostic,
        remote_mta=outcome.remote_mta, last_attempt=now, retry_until=retry_until,
    )


class LocalNotices:
    """Delivers a notice to a sender in one of our domains; ``False`` for any other address."""

    def __init__(self, store: RecipientStore, maildir: MaildirStore, plus_separator: str = "+",
                 indexer: DeliveryIndexer | None = None) -> None:
        self.store = store
        self.maildir = maildir
        self.plus_separator = plus_separator
        self.indexer = indexer  # records the notice in the mailbox index (set by app.py)

    async def __call__(self, address: str, notice: bytes) -> bool:
        try:
            parsed = parse_mailbox(address, utf8=True)
        except AddressError:
            return False
        resolution = await resolve_recipient(self.store, parsed, self.plus_separator)
        if resolution.kind == "remote":
            return False
        if resolution.mailboxes:
            written = await asyncio.to_thread(self.maildir.deliver, resolution.mailboxes, notice)
            if self.indexer is not None:
                await self.indexer.index(delivered_files(resolution.mailboxes, written, None,
                                                         self.maildir.mailbox_path), None)
        else:
            log_event("dsn.dropped", level="warning", recipient=address, detail=f"local sender is {resolution.kind}")
        return True


class NoticeSender:
    def __init__(self, queue: DeliveryQueue, hostname: str, clock: Clock, *, full_limit: int = 65536,
                 local: LocalDelivery | None = None) -> None:
        self.queue = queue
        self.hostname = hostname
        self.clock = clock
        self.full_limit = full_limit
        self.local = local
        # DKIM signing of notices that leave through the queue; set by app.py when DKIM is configured.
        self.sign: Callable[[bytes], Awaitable[bytes]] | None = None

    async def send(self, entry: QueueEntry, reports: Sequence[RecipientReport], original: bytes) -> str | None:
        """Send one notice about ``reports``; returns where it went ("local", a queue id, or None)."""
        reports = requested_reports(entry, reports)
        if not reports:
            return None
        action = reports[0].action
        if not should_notify(entry.sender):
            log_event("dsn.suppressed", queue_id=entry.queue_id, action=action, detail="null sender: no bounce")
            return None
        notice = Notice(entry.queue_id, entry.sender, entry.created_at, self.hostname, entry.envid, entry.ret)
        data = build_notice(notice, reports, original, full_limit=self.full_limit, now=self.clock.now())
        where: str | None = "local"
        if self.local is None or not await self.local(entry.sender, data):
            if self.sign is not None:
                data = await self.sign(data) + data
            where = await self.queue.enqueue("", [entry.sender], data, origin_account=None)
        log_event("dsn.sent", queue_id=entry.queue_id, action=action, recipients=len(reports), via=where)
        return where


def requested_reports(entry: QueueEntry, reports: Sequence[RecipientReport]) -> list[RecipientReport]:
    """The reports the sender asked for (NOTIFY, RFC 3461 4.1), each with its ORCPT (RFC 3461 4.2)."""
    by_address = {r.address: r for r in entry.recipients}
    kept = []
    for report in reports:
        recipient = by_address.get(report.address)
        if recipient is None:
            kept.append(report)
        elif wants_notice(recipient.notify, report.action):
            kept.append(replace(report, original_recipient=recipient.orcpt))
    return kept
