"""The session hook of the impersonation warnings (docs/user-notices.md, ``[impersonation]``).

For mail from outside (the MX listener, no authenticated account, the client not in
``[relay] trusted_networks``) to at least one local mailbox: the verdict of
:func:`hardmail.policy.impersonation.judge` on the From: field against the local names and
domains becomes ``X-Hardmail-Warning`` fields and, with ``prepend_warning``, a warning at the top
of the visible text (:mod:`hardmail.mime.prepend`). Incoming ``X-Hardmail-Warning`` fields of
such mail are dropped, so that nobody outside can forge or pre-empt a warning (the session's
verdict-field clean-up removes every ``X-Hardmail-*`` field too; this hook does not rely on it).

The local names and domains are read from the store at most every DIRECTORY_TTL seconds (one
reader at a time); a store error leaves the message without warnings (fails open) and is logged.

Body change: the head and the start of the body are all that is read (the body of a small
message is in memory; of a big one, the first PREPEND_WINDOW bytes of its file, in a worker
thread) and the rest stays in its file: memory stays bounded. So a visible text part that starts
after PREPEND_WINDOW bytes of body (after a big first attachment, say) gets the header field only.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

from hardmail.config.schema import Config
from hardmail.core.clock import Clock
from hardmail.delivery.content import MessageContent
from hardmail.delivery.durable import FileRange
from hardmail.mime.headers import parse_header_block
from hardmail.mime.prepend import insertion
from hardmail.msgauth import workers
from hardmail.ops.log import log_event
from hardmail.policy.impersonation import Directory, Settings, judge, skeleton, warning_positions
from hardmail.policy.relay import in_networks
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from hardmail.server.message_headers import off_loop_if_large
from hardmail.store.ports import Store

DIRECTORY_TTL = 60.0  # seconds the local names and domains are reused
PREPEND_WINDOW = 64 * 1024  # bytes of a big message's body read to find its visible text


def with_warning(content: MessageContent, lines: list[str]) -> MessageContent | None:
    """``content`` with ``lines`` at the top of its visible text, or None when the text cannot be
    changed safely (or does not start within PREPEND_WINDOW). Reads the file: a worker thread only."""
    rest = content.rest
    start = content.body
    if rest is not None and rest.length:
        fd = os.open(rest.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            start += os.pread(fd, min(PREPEND_WINDOW, rest.length), rest.offset)
        finally:
            os.close(fd)
    found = insertion(content.head, start, lines)
    if found is None:
        return None
    at, inserted = found
    body = start[:at] + inserted + start[at:]
    if rest is None or not rest.length:
        return replace(content, body=body)
    read = len(start) - len(content.body)
    left = FileRange(rest.path, rest.offset + read, rest.length - read) if read < rest.length else None
    return replace(content, body=body, rest=left)


class ImpersonationHook(SessionHook):
    def __init__(self, config: Config, store: Store, clock: Clock, ttl: float = DIRECTORY_TTL) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.ttl = ttl
        self._directory: Directory | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        section = config.impersonation
        self.settings = Settings.build(section.max_edit_distance, section.match_display_names,
                                       section.allow_domains, section.allow_senders)

    def from_outside(self, facts: SessionFacts) -> bool:
        return facts.listener == "smtp" and facts.account is None and \
            not in_networks(facts.peer_ip, self.config.relay.trusted_networks)

    async def directory(self) -> Directory:
        """The local names and domains, read again when older than ``ttl``."""
        if self._directory is not None and self.clock.monotonic() < self._expires:
            return self._directory
        async with self._lock:
            if self._directory is None or self.clock.monotonic() >= self._expires:
                domains = await self.store.list_domains()
                accounts = await self.store.list_accounts()
                pairs = [(a.address, a.display_name) for a in accounts]
                await workers.run(skeleton, "")  # loads the confusables table off the event loop
                self._directory = await workers.run(Directory.build, pairs, [d.name for d in domains])
                self._expires = self.clock.monotonic() + self.ttl
        return self._directory

    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        settings = self.config.impersonation
        if not settings.enabled or not message.mailboxes or not self.from_outside(facts):
            return None
        block = await off_loop_if_large(len(message.head), parse_header_block, message.head)
        drops = warning_positions(block)
        if drops:
            log_event("impersonation.forged_warning_removed", session=facts.session_id, peer=facts.peer_ip,
                      fields=len(drops))
        try:
            directory = await self.directory()
        except Exception as exc:  # the store: no warning rather than no mail
            log_event("impersonation.error", level="warning", session=facts.session_id, error=type(exc).__name__)
            return MessageDecision(drop_headers=drops) if drops else None
        verdict = await workers.run(judge, block, directory, self.settings)
        if not verdict:
            return MessageDecision(drop_headers=drops) if drops else None
        changed = await workers.run(with_warning, message.content, verdict.notice_lines()) \
            if settings.prepend_warning else None
        log_event("impersonation.warning", session=facts.session_id, peer=facts.peer_ip,
                  kinds=[f.kind for f in verdict.findings], senders=sorted({f.sender for f in verdict.findings}),
                  looks_like=sorted({f.local for f in verdict.findings if f.local}) or None,
                  prepended=changed is not None if settings.prepend_warning else None)
        return MessageDecision(local_headers=verdict.headers, drop_headers=drops, content=changed)
