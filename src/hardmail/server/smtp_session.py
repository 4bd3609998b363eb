"""One SMTP session: pumps bytes between a Channel and the sans-IO core, and decides each event.

The only place (with channel.py and listener.py) that awaits. Decisions come from policy/ (pure
verdicts) with the facts this module gathers (store look-ups, TLS state, authentication).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hardmail.auth.pool import CLIENT_GONE
from hardmail.config.schema import Config
from hardmail.core.address import Address, AddressError, parse_mailbox
from hardmail.core.errors import reply_for_error
from hardmail.core.ids import new_id
from hardmail.core.replies import (
    HEADER_TOO_BIG,
    LOCAL_ERROR,
    SENDER_NOT_OWNED,
    SESSION_TIME_LIMIT,
    SHUTTING_DOWN,
    TIMEOUT,
    TLS_NOT_AVAILABLE,
    Reply,
)
from hardmail.delivery.content import MessageContent
from hardmail.delivery.dsn import DsnRequest, RecipientDsn
from hardmail.delivery.headers import too_many_hops
from hardmail.delivery.pipeline import ClientTrace, Envelope
from hardmail.delivery.recipients import Resolution, owned_addresses, resolve_recipient
from hardmail.mime.addresses import originator_addresses
from hardmail.mime.headers import HeaderBlock
from hardmail.msgauth import workers
from hardmail.ops.log import EventLogger
from hardmail.policy.relay import ClientFacts, mail_from_verdict, owns_address, rcpt_verdict
from hardmail.policy.verdict import Verdict
from hardmail.proto.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    DataStart,
    Event,
    Helo,
    Mail,
    MessageReceived,
    MessageRefused,
    ProtocolError,
    Rcpt,
    StartTls,
)
from hardmail.proto.smtp.state import Phase, ServerConnection, SmtpOptions
from hardmail.server.access_hook import relay_rules_for
from hardmail.server.channel import Channel, ChannelClosed
from hardmail.server.context import ServerContext
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts
from hardmail.server.listener import IMPLICIT_TLS_KINDS, register_session
from hardmail.server.message_headers import head_block, message_to_store, off_loop_if_large
from hardmail.server.smtp_auth import SmtpAuth
from hardmail.server.smtp_intake import MessageIntake
from hardmail.server.tls import describe_tls
from hardmail.server.watchdog import Watchdog

AUTH_MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")
ADDRESS_LITERAL_REFUSED = Reply(550, "5.1.2", "Address literals are not accepted as recipients; use a domain name")
WRITE_HIGH_WATER = 64 * 1024  # unread reply bytes before the session stops taking commands
REPLY_BATCH_LIMIT = 16 * 1024  # held reply bytes that are written at once, without waiting for a read


def smtp_options(config: Config, kind: str) -> SmtpOptions:
    smtp = config.smtp
    offers_auth = kind != "smtp" or smtp.auth_on_mx
    return SmtpOptions(
        hostname=config.server.hostname,
        max_message_size=smtp.max_message_size,
        max_recipients=smtp.max_recipients,
        max_commands=smtp.max_commands,
        max_bad_commands=smtp.max_bad_commands,
        max_line_length=smtp.max_line_length,
        starttls_available=kind not in IMPLICIT_TLS_KINDS,
        tls_active=False,
        auth_mechanisms=AUTH_MECHANISMS if offers_auth else (),
        auth_requires_tls=not smtp.allow_plaintext_auth,
    )


@dataclass
class SessionTransaction:
    sender: str = ""
    utf8: bool = False
    recipients: list[str] = field(default_factory=list)
    mailboxes: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    ret: str = ""  # RFC 3461 4.3
    envid: str = ""  # RFC 3461 4.4
    rcpt_dsn: dict[str, RecipientDsn] = field(default_factory=dict)  # per remote recipient (RFC 3461 4.1, 4.2)

    def dsn(self) -> DsnRequest:
        return DsnRequest(self.ret, self.envid, dict(self.rcpt_dsn))


class SmtpSession:
    def __init__(self, ctx: ServerContext, kind: str, channel: Channel) -> None:
        self.ctx = ctx
        self.kind = kind
        self.channel = channel
        self.id = new_id()
        self.conn = ServerConnection(smtp_options(ctx.config, kind), content_sink=lambda: self.intake.open())
        self.peer_ip, self.peer_port = channel.peer()
        self.log = EventLogger(session=self.id, peer=self.peer_ip, listener=kind)
        self.intake = MessageIntake(lambda: ctx.incoming_store(), self.log)  # the message being received
        self.auth = SmtpAuth(ctx, self.log, facts=self.facts, target=self)
        self.owned: frozenset[str] = frozenset()
        self.tls_info: dict[str, str] | None = None
        self.txn: SessionTransaction | None = None
        self.deadline = time.monotonic() + ctx.config.smtp.timeouts.session
        self.messages = 0
        self.idle = False  # waiting for the next command: safe to close at shutdown
        self.stopping = False
        self._held_replies: list[bytes] = []  # replies of this pump cycle, written in one call
        self._held_size = 0
        self._watchdog = Watchdog(channel)
        self._known_facts: SessionFacts | None = None
        self._logged_helo: str | None = None  # the HELO/EHLO name last logged at info
        self.reading = False  # waiting for client input (any phase)
        self.ending: Reply | None = None  # set by end_session: answered to the next command instead

    # ----- the pump ---------------------------------------------------------------------
    async def run(self) -> None:
        self.log.event("smtp.connect", port=self.peer_port)
        # This task's waiting password checks are dropped if the client goes (stand-ins may lack it).
        gone = CLIENT_GONE.set(getattr(self.channel, "lost", None))
        try:
            refusal = await self._first_refusal("on_connect")
            if refusal is not None:  # cheap: before any TLS or password work
                self.log.event("smtp.reject", command="CONNECT", code=refusal.code, enhanced=refusal.enhanced,
                               text=refusal.lines[0])
                if self.kind not in IMPLICIT_TLS_KINDS:
                    self.channel.write(self.conn.greeting(refusal))
                return
            if self.kind in IMPLICIT_TLS_KINDS and not await self._handshake():
                return
            self.channel.write(self.conn.greeting())
            await self._pump()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.log.event("smtp.connection_error", level="warning", error=type(exc).__name__)
        finally:
            self.ctx.sessions.remove(self.id)
            CLIENT_GONE.reset(gone)
            self._watchdog.stop()
            self._flush_replies()
            self.channel.close()
            await self.intake.release()
            for hook in self.ctx.hooks:
                await hook.on_disconnect(self.facts())
            self.log.event("smtp.disconnect", commands=self.conn.commands, errors=self.conn.errors,
                           messages=self.messages)

    async def _pump(self) -> None:
        while not self.conn.closed:
            if self.ending is not None:  # ended while busy: after the command in progress, in any phase
                self._hold_reply(self.ending.to_bytes())
                break
            if self.stopping and self.conn.phase is Phase.COMMAND:
                self._hold_reply(SHUTTING_DOWN.to_bytes())
                break
            if self.channel.write_buffer_size() + self._held_size > WRITE_HIGH_WATER:
                await self._drain()  # a client that does not read its replies gets no more work done
                if self.ending is not None:
                    continue  # ended while the client was taking its replies: no further command
            event = self.conn.next_event()
            if event is NEED_DATA:
                await self.intake.wait_writable()  # back-pressure
                data = await self._read()
                if not data:
                    return
                self.conn.receive_data(data)
                continue
            assert isinstance(event, Event)
            reply = await self._decide(event)
            self._hold_reply(self.conn.send(reply))
            self._after_reply(event, reply)
            await self.intake.release(self.conn.content_in_progress)
            if self.conn.awaiting_tls and not await self._handshake():
                return
        await self._drain()

    def _hold_reply(self, data: bytes) -> None:
        """Keep a reply for the one write of this pump cycle; a large batch is written at once."""
        self._held_replies.append(data)
        self._held_size += len(data)
        if self._held_size > REPLY_BATCH_LIMIT:
            self._flush_replies()

    def _flush_replies(self) -> None:
        """Write the held replies in one call (one send for a pipelined group of commands)."""
        if not self._held_replies:
            return
        batch = self._held_replies[0] if len(self._held_replies) == 1 else b"".join(self._held_replies)
        self._held_replies.clear()
        self._held_size = 0
        self.channel.write(batch)

    async def _drain(self) -> None:
        """Write the held replies, then wait until the client has taken them, within the command
        timeout; else drop it. Every wait for input or a TLS handshake drains first, so no reply is
        held while the session waits for the client (RFC 2920 3.1)."""
        self._flush_replies()
        if not self.channel.must_drain:
            return
        seconds, at_limit = self._wait_limit(self.ctx.config.smtp.timeouts.command)
        try:
            with self._watchdog.waiting(seconds):
                await self.channel.drain()
        except TimeoutError:
            self.log.event("smtp.timeout", level="warning", phase="write", code="4.4.2",
                           reason="session_limit" if at_limit else "write_timeout")
            self.channel.abort()
            raise ConnectionAbortedError("client does not read its replies") from None

    def _wait_limit(self, phase_timeout: float) -> tuple[float, bool]:
        """Seconds the next wait may last, and whether the total session limit (rather than the
        phase's own timeout) is what ends it."""
        left = self.deadline - time.monotonic()
        return max(0.0, min(phase_timeout, left)), left <= phase_timeout

    async def _read(self) -> bytes:
        await self._drain()
        if self.ending is not None:  # ended while the client was taking its replies
            self._hold_reply(self.ending.to_bytes())
            return b""
        timeouts = self.ctx.config.smtp.timeouts
        phase_timeout = timeouts.data_block if self.conn.phase in (Phase.DATA, Phase.BDAT) else timeouts.command
        seconds, at_limit = self._wait_limit(phase_timeout)
        if seconds <= 0.0:  # a busy client reaches the session limit between two commands
            return self._close_for_time(at_limit=True)
        self.idle = self.conn.phase is Phase.COMMAND
        self.reading = True
        try:
            with self._watchdog.waiting(seconds):
                return await self.channel.read()
        except TimeoutError:
            return self._close_for_time(at_limit)
        finally:
            self.idle = self.reading = False

    def end_session(self, reply: Reply) -> None:
        """The account's credentials changed (``hardmail.server.sessions``): ``reply`` and close,
        at once when waiting for the client (a message being received is dropped), else after the
        command in progress."""
        self.ending = reply
        self.log.event("smtp.session_ended", account=self.auth.account, code=reply.enhanced)
        draining = self.channel.must_drain  # the client does not read its replies: do not wait for it
        if not (self.reading or draining):
            return
        self.conn.close()
        self._flush_replies()
        self.channel.write(reply.to_bytes())
        self.channel.close()  # what is written goes out if the client reads within the linger time
        if draining:
            self.channel.interrupt(ConnectionAbortedError("session ended while the client was not reading"))

    def _close_for_time(self, at_limit: bool) -> bytes:
        """421 saying which time ran out: the client's silence, or the session's total lifetime."""
        reply, reason = (SESSION_TIME_LIMIT, "session_limit") if at_limit else (TIMEOUT, "idle_timeout")
        self.log.event("smtp.timeout", level="warning", phase=self.conn.phase.value, code=reply.enhanced,
                       reason=reason)
        self.channel.write(reply.to_bytes())
        self.channel.close()
        return b""

    def shut_down_if_idle(self) -> bool:
        """At server stop: an idle session gets 421 and is closed; True when that happened.

        A busy one is marked and answers 421 to its next command, after the current one is done.
        """
        self.stopping = True
        if not self.idle:
            return False
        self.conn.close()
        self._flush_replies()  # nothing is held while idle; kept for the order of replies regardless
        self.channel.write(SHUTTING_DOWN.to_bytes())
        self.channel.close()
        self.log.event("smtp.shutdown", code="4.3.2")
        return True

    async def _handshake(self) -> bool:
        try:
            await self._drain()
            await self.channel.start_tls(self.ctx.tls.context(), self.ctx.config.smtp.timeouts.tls_handshake)
        except (OSError, TimeoutError, ChannelClosed) as exc:
            self.log.event("smtp.tls", level="warning", result="failure", error=type(exc).__name__)
            return False
        self.conn.start_tls()  # RFC 3207 4.2: forget what was learnt in the clear
        await self.intake.release()
        self.ctx.sessions.remove(self.id)  # and any authentication
        self.txn = None
        self.tls_info = describe_tls(self.channel.ssl_object())
        self.auth = SmtpAuth(self.ctx, self.log, facts=self.facts, target=self)
        self.owned = frozenset()
        self.log.event("smtp.tls", result="success", **self.tls_info)
        return True

    # ----- decisions --------------------------------------------------------------------
    async def _decide(self, event: Event) -> Reply:
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return event.reply
        try:
            return await handler(self, event)
        except Exception as exc:
            self.log.event("smtp.error", level="error", command=type(event).__name__,
                           error=type(exc).__name__, detail=str(exc)[:300])
            return reply_for_error(exc)

    def facts(self) -> SessionFacts:
        """What hooks see; made again only when HELO, TLS or the authenticated account changed."""
        known = self._known_facts
        if (known is not None and known.helo == self.conn.helo and known.tls is self.tls_info
                and known.account == self.auth.account):
            return known
        self._known_facts = SessionFacts(session_id=self.id, listener=self.kind, peer_ip=self.peer_ip,
                                         peer_port=self.peer_port, helo=self.conn.helo, tls=self.tls_info,
                                         account=self.auth.account)
        return self._known_facts

    async def _first_refusal(self, method: str, *args: Any) -> Reply | None:
        """Ask every hook in order; the first reply that is not None wins."""
        for hook in self.ctx.hooks:
            reply: Reply | None = await getattr(hook, method)(self.facts(), *args)
            if reply is not None:
                return reply
        return None

    async def _on_helo(self, event: Helo) -> Reply:
        # The same name again (a client looping on EHLO) is not news: debug, not a line per command.
        repeated, self._logged_helo = event.hostname == self._logged_helo, event.hostname
        self.log.event("smtp.helo", level="debug" if repeated else "info", helo=event.hostname, esmtp=event.extended)
        return await self._first_refusal("on_helo", event.hostname) or event.reply

    async def _on_starttls(self, event: StartTls) -> Reply:
        try:
            self.ctx.tls.context()
        except Exception:
            return TLS_NOT_AVAILABLE
        return event.reply

    async def _on_auth(self, event: Auth) -> Reply:
        return await self.auth.start(event)  # the hooks and the session registry: server.login

    async def _on_auth_response(self, event: AuthResponse) -> Reply:
        return await self.auth.respond(event)

    def _facts(self) -> ClientFacts:
        return ClientFacts(ip=self.peer_ip, listener=self.kind, tls=self.conn.tls_active, account=self.auth.account)

    async def _on_mail(self, event: Mail) -> Reply:
        owned = event.sender is None or self.auth.account is None or await self._owns(event.sender)
        verdict = mail_from_verdict(self._facts(), event.sender, owned)
        if verdict.accept:
            refusal = await self._first_refusal("on_mail", event.sender, event.params)
            if refusal is not None:
                verdict = Verdict.refuse(refusal, "refused by a check")
        sender = event.sender.key if event.sender else ""
        self.log.event("smtp.mail", sender=sender, size=event.params.size, accepted=verdict.accept,
                       reason=verdict.reason or None)
        if verdict.accept:
            self.txn = SessionTransaction(sender=sender, utf8=event.params.smtputf8, ret=event.params.ret or "",
                                          envid=event.params.envid or "")
        return verdict.reply

    async def _owns(self, address: Address) -> bool:
        """Whether the authenticated account may use ``address`` as a sender."""
        assert self.auth.account is not None
        if not self.owned:
            self.owned = await owned_addresses(self.ctx.store, self.auth.account)
        plus = self.ctx.config.smtp.plus_separator
        taken = False
        if address.key not in self.owned and address.without_tag(plus) is not None:
            store = self.ctx.store
            taken = await store.get_account(address.key) is not None or await store.get_alias(address.key) is not None
        return owns_address(self.owned, address, plus, taken)

    async def _on_rcpt(self, event: Rcpt) -> Reply:
        address = event.recipient
        if event.bare_postmaster:  # RFC 5321 4.5.1: must be accepted
            address = await self._postmaster()
        if address.domain.startswith("["):
            self.log.event("smtp.rcpt", recipient=address.key, accepted=False, reason="address literal")
            return ADDRESS_LITERAL_REFUSED
        reveal = self.ctx.config.smtp.reveal_disabled_recipients  # else disabled looks unknown: reply, timing, log kind
        resolution = await resolve_recipient(self.ctx.store, address, self.ctx.config.smtp.plus_separator,
                                             disabled_as_unknown=not reveal)
        rules = await relay_rules_for(self.ctx, self.peer_ip, self.txn.sender if self.txn else "")
        verdict = rcpt_verdict(self._facts(), resolution.kind, rules, reveal_disabled=reveal)
        if verdict.accept and self.txn is not None:
            refusal = await self._first_refusal("on_rcpt", self.txn.sender, address, resolution)
            if refusal is not None:
                verdict = Verdict.refuse(refusal, "refused by a check")
        kind = "unknown" if resolution.kind == "disabled" and not reveal else resolution.kind
        self.log.event("smtp.rcpt", recipient=address.key, kind=kind, accepted=verdict.accept,
                       reason=verdict.reason or None)
        if verdict.accept and self.txn is not None:
            self._add_recipient(address.key, resolution)
            expanded = tuple(resolution.remote) != (address.key,)
            orcpt = event.params.orcpt or (f"rfc822;{address.key}" if expanded else "")
            for remote in resolution.remote:
                self.txn.rcpt_dsn.setdefault(remote, RecipientDsn(event.params.notify, orcpt))
        return verdict.reply

    async def _postmaster(self) -> Address:
        """Where a bare ``<Postmaster>`` goes: server.postmaster, else postmaster@ the first hosted domain."""
        configured = self.ctx.config.server.postmaster
        if configured:
            return parse_mailbox(configured, utf8=True)
        domains = await self.ctx.store.list_domains()
        return Address("postmaster", domains[0].name if domains else "invalid")

    def _add_recipient(self, recipient: str, resolution: Resolution) -> None:
        assert self.txn is not None
        self.txn.recipients.append(recipient)
        self.txn.mailboxes.extend(m for m in resolution.mailboxes if m not in self.txn.mailboxes)
        self.txn.remote.extend(r for r in resolution.remote if r not in self.txn.remote)

    async def _on_data(self, event: DataStart) -> Reply:
        return self.intake.refusal("DATA") or event.reply

    async def _on_message(self, event: MessageReceived) -> Reply:
        assert self.txn is not None
        if self.channel.closing:  # nobody would read the 250: do not accept what the client will resend
            return LOCAL_ERROR
        content = await self.intake.content()
        if isinstance(content, Reply):
            return content
        block = await head_block(content.head, self.intake.head_complete)
        refusal = await self._head_refusal(block)
        if refusal is not None:
            return refusal
        extra = b""
        if self.kind != "smtp":  # a missing Message-ID/Date, from the header block (off the loop when large)
            extra = await off_loop_if_large(len(block.data), self.ctx.acceptor.submission_headers, content.head)
        decision = await self._message_decision(content.with_head(extra + content.head) if extra else content)
        if decision.reply is not None:
            return decision.reply
        # Fields are removed from the head only: it holds the whole header block.
        kept = await message_to_store(self.ctx.config, self.log, (content.head,), block, extra, decision.drop_headers)
        head = b"".join(kept)
        envelope = Envelope(sender=self.txn.sender, mailboxes=tuple(self.txn.mailboxes),
                            remote=tuple(self.txn.remote), recipients=tuple(self.txn.recipients), utf8=self.txn.utf8,
                            folder=decision.folder, dsn=self.txn.dsn())
        try:
            local = None  # what only our mailboxes get: a changed body, a warning
            if decision.content is not None or decision.local_headers:
                local = (decision.content or content).with_head(decision.local_headers + decision.headers + head)
            accepted = await self.ctx.acceptor.accept(envelope, self._trace(),
                                                      content.with_head(decision.headers + head), local)
        except Exception as exc:  # the spool, a Maildir or the queue's database row
            return self.intake.write_failure(exc, "accept")
        self.messages += 1
        self.log.event("smtp.accept", message_id=accepted.message_id, size=accepted.size, sender=envelope.sender,
                       recipients=len(envelope.recipients), local=len(envelope.mailboxes),
                       remote=len(envelope.remote), spool_id=accepted.spool_id, bdat=event.via_bdat,
                       folder=(envelope.folder or "INBOX") if envelope.mailboxes else None)
        return Reply(250, "2.0.0", f"OK: queued as {accepted.message_id}")

    async def _head_refusal(self, block: HeaderBlock) -> Reply | None:
        """The checks of the header block before any hook: originator (submission), size, loops."""
        assert self.txn is not None
        if self.auth.account is not None:
            problem = await self._originator_problem(block)
            if problem is not None:
                self.log.event("smtp.originator", level="warning", account=self.auth.account, reason=problem)
                return SENDER_NOT_OWNED.with_text("From: header missing, malformed or not yours")
        if not block.complete:  # Exim's header_maxsize does the same: fields past it would be seen by no check
            self.log.event("smtp.header_too_big", level="warning", limit=self.intake.store.max_header_size)
            return HEADER_TOO_BIG
        if too_many_hops(block):  # RFC 5321 6.3: a mail loop
            self.log.event("smtp.loop", level="warning", sender=self.txn.sender)
            return Reply(554, "5.4.6", "too many Received: headers: mail loop detected")
        return None

    async def _message_decision(self, content: MessageContent) -> MessageDecision:
        """Run every hook's message check; headers add up, the first refusal or folder wins."""
        assert self.txn is not None
        message = MessageFacts(sender=self.txn.sender, recipients=tuple(self.txn.recipients),
                               mailboxes=tuple(self.txn.mailboxes), remote=tuple(self.txn.remote),
                               content=content, size=content.size)
        headers, local_headers, folder, drop = b"", b"", None, set[int]()
        changed: MessageContent | None = None
        for hook in self.ctx.hooks:
            decision = await hook.on_message(self.facts(), message)
            if decision is None:
                continue
            if decision.reply is not None:
                return decision
            headers += decision.headers
            local_headers += decision.local_headers
            folder = folder or decision.folder
            drop.update(decision.drop_headers)
            changed = changed or decision.content
        return MessageDecision(headers=headers, folder=folder, drop_headers=tuple(sorted(drop)), content=changed,
                               local_headers=local_headers)

    async def _originator_problem(self, block: HeaderBlock) -> str | None:
        """Why the From:/Sender: fields of a submitted message are refused, or None (RFC 5322 3.6.2)."""
        problem, addresses = await workers.run(originator_addresses, block)  # CPU-bound on hostile input
        if problem is not None:
            return problem
        for text in addresses:
            try:
                address = parse_mailbox(text, utf8=True)
            except AddressError:
                return f"unparsable originator address {text[:80]!r}"
            if not await self._owns(address):
                return f"originator {address.key} not owned"
        return None

    def _trace(self) -> ClientTrace:
        return ClientTrace(helo=self.conn.helo or "unknown", peer_ip=self.peer_ip, peer_name=None,
                           esmtp=self.conn.esmtp, tls=self.tls_info, account=self.auth.account,
                           submission=self.kind != "smtp")

    def _after_reply(self, event: Event, reply: Reply) -> None:
        if not reply.is_positive and reply.code != 334:
            command = event.command if isinstance(event, ProtocolError) else type(event).__name__.upper()
            reason = event.reason if isinstance(event, MessageRefused) else None
            self.log.event("smtp.reject", level="info", command=command, code=reply.code,
                           enhanced=reply.enhanced, text=reply.lines[0], reason=reason)
        if self.conn.transaction is None:
            self.txn = None


_HANDLERS: dict[type[Event], Callable[[SmtpSession, Any], Awaitable[Reply]]] = {
    Helo: SmtpSession._on_helo,
    StartTls: SmtpSession._on_starttls,
    Auth: SmtpSession._on_auth,
    AuthResponse: SmtpSession._on_auth_response,
    Mail: SmtpSession._on_mail,
    Rcpt: SmtpSession._on_rcpt,
    DataStart: SmtpSession._on_data,
    MessageReceived: SmtpSession._on_message,
}


for _kind in ("smtp", "submission", "submissions"):
    register_session(_kind, SmtpSession)
