"""Accepting a message: trace headers, then durable local delivery and/or the outbound queue.

Runs after the client's final dot (or last BDAT chunk). The SMTP 250 is sent only after this
returns: every local copy is fsync'd in its Maildir and every remote recipient is in the outbound
queue, its spool file fsync'd and its row committed (DESIGN.md data-safety invariant); local
copies are then recorded in the mailbox index (:mod:`hardmail.delivery.local_index`), so that
IMAP and POP3 clients see them with the next UID. File work
runs in a thread (or the Maildir writer process), off the event loop. The message comes as a
:class:`MessageContent`: the new header lines and the head are written from memory, the rest is
copied from the message's incoming file by the kernel, so acceptance holds no more of a big
message in memory than its head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hardmail.core.clock import Clock
from hardmail.core.ids import new_id
from hardmail.delivery.content import MessageContent
from hardmail.delivery.dsn import DsnRequest, RecipientReport
from hardmail.delivery.durable import Part, part_size
from hardmail.delivery.group_commit import GroupCommit, group_commit_for
from hardmail.delivery.headers import (
    missing_submission_headers,
    received_header,
    split_header_block,
    with_protocol,
)
from hardmail.delivery.local_index import DeliveryIndexer, delivered_files
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.notices import NoticeSender
from hardmail.delivery.queue import DeliveryQueue
from hardmail.delivery.spool import OutboundSpool
from hardmail.ops.log import log_event
from hardmail.store.ports_queue import QueueEntry


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str  # "" for the null reverse-path
    mailboxes: tuple[str, ...]  # local accounts, deduplicated
    remote: tuple[str, ...]  # recipients outside our domains
    recipients: tuple[str, ...]  # as the client gave them (for the Received "for" clause)
    utf8: bool = False
    folder: str | None = None  # local copies go into this folder (e.g. "Junk"); None is the inbox
    dsn: DsnRequest | None = None  # the client's DSN parameters (RFC 3461), kept for remote recipients


@dataclass(frozen=True, slots=True)
class ClientTrace:
    helo: str
    peer_ip: str
    peer_name: str | None
    esmtp: bool
    tls: Mapping[str, str] | None
    account: str | None
    submission: bool


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    local_paths: tuple[str, ...] = ()
    spool_id: str | None = None
    size: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def message_head(chunks: Sequence[bytes], limit: int = 256 * 1024) -> bytes:
    """The first ``limit`` bytes of a message held in chunks, enough for its header block."""
    head = bytearray()
    for chunk in chunks:
        head += chunk[: limit - len(head)]
        if len(head) >= limit:
            break
    return bytes(head)


class MessageAcceptor:
    def __init__(self, maildir: MaildirStore, queue: DeliveryQueue, hostname: str, clock: Clock,
                 committer: GroupCommit | None = None, indexer: DeliveryIndexer | None = None,
                 notices: NoticeSender | None = None) -> None:
        self.maildir = maildir
        self.indexer = indexer  # None: no mailbox index (files only; a sync indexes them later)
        self.notices = notices  # failure notices for mailboxes full at delivery (over_quota = "bounce")
        self.queue = queue
        self.hostname = hostname
        self.clock = clock
        self.committer = committer  # None: the thread-based committer of the running loop

    @property
    def spool(self) -> OutboundSpool:
        return self.queue.spool

    def trace_headers(self, envelope: Envelope, client: ClientTrace, message_id: str) -> bytes:
        """The Received: header (RFC 5321 4.4) for this acceptance."""
        now = self.clock.now()
        protocol = with_protocol(esmtp=client.esmtp, tls=client.tls is not None,
                                 auth=client.account is not None, utf8=envelope.utf8)
        single = envelope.recipients[0] if len(envelope.recipients) == 1 else None
        return received_header(
            helo=client.helo, peer_ip=client.peer_ip, peer_name=client.peer_name, hostname=self.hostname,
            protocol=protocol, queue_id=message_id, recipient=single, tls=client.tls,
            authenticated=client.account, when=now,
        )

    def submission_headers(self, head: bytes) -> bytes:
        """A missing Message-ID: and Date: for a submitted message (RFC 6409 8.2, 8.3), from its
        head; added before anything signs the message."""
        head, _ = split_header_block(head)
        return missing_submission_headers(head, hostname=self.hostname, when=self.clock.now())

    async def accept(self, envelope: Envelope, client: ClientTrace, message: MessageContent | Sequence[bytes],
                     local_message: MessageContent | None = None) -> Accepted:
        """Queue remote copies first, then local ones; a failure in between takes the queued copy back,
        so that the client's retry after our 4xx does not deliver twice. ``local_message``, when given,
        is what the local mailboxes get instead of ``message`` (a warning only they see)."""
        message_id = new_id(self.clock.now())
        trace = self.trace_headers(envelope, client, message_id)
        body = message.parts() if isinstance(message, MessageContent) else list(message)
        remote_parts: list[Part] = [trace, *body]
        parts: list[Part] = remote_parts if local_message is None else [trace, *local_message.parts()]
        size = sum(part_size(p) for p in parts)
        spool_id = None
        if envelope.remote:
            spool_id = await self.queue.enqueue(
                envelope.sender, envelope.remote, remote_parts,
                origin_account=client.account, meta={"message_id": message_id}, queue_id=message_id,
                notify=False, dsn=envelope.dsn,
            )
        full = await self.indexer.without_room(envelope.mailboxes, size) if self.indexer and envelope.mailboxes else ()
        local = tuple(account for account in envelope.mailboxes if account not in full)
        try:
            written = await self._deliver_local(local, parts, envelope.folder)
        except BaseException:
            if spool_id is not None:
                await self.queue.remove(spool_id)
            raise
        if written and self.indexer is not None:  # after the files are durable, before the 250
            delivered = delivered_files(local, written, envelope.folder, self.maildir.mailbox_path)
            await self.indexer.index(delivered, envelope.folder, size)
        if spool_id is not None:
            self.queue.notify()
        if full:
            await self._bounce_full(envelope, full, parts, message_id, size)
        return Accepted(message_id, tuple(str(p) for p in written), spool_id, size)

    async def _bounce_full(self, envelope: Envelope, full: tuple[str, ...], parts: list[Part], message_id: str,
                           size: int) -> None:
        """A failure notice (RFC 3464, 5.2.2) to the sender for mailboxes that were full at delivery
        ([mailbox] over_quota = "bounce"); the message itself was accepted for the others."""
        if self.notices is None:
            return
        now = self.clock.now()
        entry = QueueEntry(message_id, envelope.sender, (), size, None, now, now, ret="HDRS")
        reports = [RecipientReport(account, "failed", "5.2.2", "552 5.2.2 Mailbox full", last_attempt=now)
                   for account in full]
        head = b"".join(part for part in parts if isinstance(part, bytes))  # the header block is in memory
        try:
            await self.notices.send(entry, reports, head)
        except Exception as exc:  # the others got the message; the sender is not told of these
            log_event("dsn.failed", level="error", queue_id=message_id, recipients=len(full),
                      error=type(exc).__name__, detail=str(exc)[:200])

    async def _deliver_local(self, mailboxes: tuple[str, ...], parts: list[Part],
                             folder: str | None = None) -> list[Path]:
        if not mailboxes:
            return []
        committer = self.committer or group_commit_for(self.maildir)
        return await committer.deliver(mailboxes, parts, folder)

    async def close(self) -> None:
        """Stop the Maildir writer process, if there is one (at server stop)."""
        if self.committer is not None and self.committer.writer is not None:
            await self.committer.writer.close()
