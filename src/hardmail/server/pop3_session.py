"""One POP3 session (listener kinds ``pop3``: STLS on 110, ``pop3s``: implicit TLS on 995): pumps
bytes between a Channel and the sans-IO core (``hardmail.proto.pop3``) and decides each event.

Logins go through the protocol-neutral :class:`hardmail.server.login.LoginDriver` (USER/PASS as
mechanism "USER", AUTH PLAIN and SCRAM-SHA-256), so bans, IP ranges, two-factor rules, app
password scopes, login history and logging are those of SMTP AUTH. Every failure gets the same
``-ERR [AUTH] Authentication failed.`` (RFC 3206 4). After a login the INBOX is locked and taken
as the maildrop (:mod:`hardmail.server.pop3_maildrop`); messages are streamed from their files
with back-pressure, so a client that does not read cannot grow the server's memory. Marked
messages are removed only in the UPDATE state, before the +OK to QUIT (RFC 1939 6); a connection
that ends otherwise changes nothing. RETR and TOP do not set \\Seen (Dovecot's default for POP3,
``pop3_no_flag_updates``-like behaviour: a POP3 download does not mark mail read for IMAP).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from hardmail.core.ids import new_id
from hardmail.core.replies import Reply
from hardmail.ops.log import EventLogger
from hardmail.proto import sasl
from hardmail.proto.pop3 import replies as r
from hardmail.proto.pop3.connection import Phase, Pop3Options, Pop3ServerConnection, State
from hardmail.proto.pop3.events import NEED_DATA, Auth, AuthResponse, Event, Pass, Quit, Retr, Stls, Top
from hardmail.proto.pop3.multiline import MessageEncoder
from hardmail.proto.pop3.replies import Pop3Reply
from hardmail.server.channel import Channel, ChannelClosed
from hardmail.server.context import ServerContext
from hardmail.server.hooks import SessionFacts
from hardmail.server.listener import register_session
from hardmail.server.login import LoginDriver, LoginResult
from hardmail.server.pacing import CommandPacer
from hardmail.server.pop3_maildrop import INBOX, READ_CHUNK, MaildropInUse, MaildropLock, open_file, open_maildrop
from hardmail.server.tls import describe_tls
from hardmail.server.watchdog import Watchdog

WRITE_HIGH_WATER = 64 * 1024  # unread response bytes before the session stops taking commands
TOO_MANY_CONNECTIONS = r.err("Too many connections from your address.", "SYS/TEMP")
_OPEN_PER_IP: Counter[str] = Counter()  # this process's POP3 connections by client address


def pop3_options(ctx: ServerContext, kind: str) -> Pop3Options:
    section = ctx.config.pop3
    return Pop3Options(max_line=section.max_line, stls_available=kind == "pop3", tls_active=False,
                       allow_plaintext_login=section.allow_plaintext_login)


def reply_of(reply: Reply) -> Pop3Reply:
    """A hook's SMTP reply (a connect refusal) as a POP3 one, temporary or not (RFC 3206 4)."""
    return r.err(reply.lines[0] if reply.lines else "", "SYS/TEMP" if reply.is_temporary else "SYS/PERM")


class Pop3Session:
    """One connection of listener kind "pop3" or "pop3s"; ``run()`` serves it to its end."""

    def __init__(self, ctx: ServerContext, kind: str, channel: Channel) -> None:
        self.ctx = ctx
        self.kind = kind
        self.channel = channel
        self.id = new_id()
        self.conn = Pop3ServerConnection(pop3_options(ctx, kind))
        self.peer_ip, self.peer_port = channel.peer()
        self.log = EventLogger(session=self.id, peer=self.peer_ip, listener=kind)
        self.tls_info: dict[str, str] | None = None
        self.login = self._login_driver()
        self.account: str | None = None
        self.lock: MaildropLock | None = None
        self.pace = CommandPacer(ctx.config.pop3.commands_per_second)
        self.started = time.monotonic()
        self.idle = False  # waiting for the next command: safe to close at shutdown
        self.stopping = False
        self.ending: Pop3Reply | None = None
        self.retrieved = 0
        self._watchdog = Watchdog(channel)

    def _login_driver(self) -> LoginDriver:
        # A password check waiting in the hashing queue is dropped when the client goes away.
        return LoginDriver(self.ctx, self.log, protocol="pop3", facts=self.facts,
                           client_gone=getattr(self.channel, "lost", None))

    def facts(self) -> SessionFacts:
        return SessionFacts(session_id=self.id, listener=self.kind, peer_ip=self.peer_ip, peer_port=self.peer_port,
                            helo=None, tls=self.tls_info, account=self.account)

    # ----- the pump ---------------------------------------------------------------------
    async def run(self) -> None:
        self.log.event("pop3.connect", port=self.peer_port)
        _OPEN_PER_IP[self.peer_ip] += 1
        try:
            refusal = await self._connect_refusal()
            if refusal is not None:
                self.log.event("pop3.reject", command="CONNECT", text=refusal.text)
                if self.kind != "pop3s":
                    self.channel.write(self.conn.greeting(refusal))
                return
            if self.kind == "pop3s" and not await self._handshake():
                return
            self.channel.write(self.conn.greeting())
            await self._pump()
        except (ConnectionError, TimeoutError) as exc:
            self.log.event("pop3.connection_error", level="warning", error=type(exc).__name__)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        _OPEN_PER_IP[self.peer_ip] -= 1
        if _OPEN_PER_IP[self.peer_ip] <= 0:
            del _OPEN_PER_IP[self.peer_ip]
        self.ctx.sessions.remove(self.id)
        self._watchdog.stop()
        if self.lock is not None:
            self.lock.release()
        self.channel.close()
        for hook in self.ctx.hooks:
            await hook.on_disconnect(self.facts())
        self.log.event("pop3.disconnect", commands=self.conn.commands, errors=self.conn.errors,
                       retrieved=self.retrieved, state=self.conn.state.value)

    async def _connect_refusal(self) -> Pop3Reply | None:
        if _OPEN_PER_IP[self.peer_ip] > self.ctx.config.pop3.connections_per_ip:
            return TOO_MANY_CONNECTIONS
        for hook in self.ctx.hooks:
            reply = await hook.on_connect(self.facts())
            if reply is not None:
                return reply_of(reply)
        return None

    async def _pump(self) -> None:
        while not self.conn.closed:
            if self.ending is not None:
                self.channel.write(self.ending.to_bytes())
                break
            if self.stopping and self.conn.phase is Phase.COMMAND:
                self.channel.write(r.SHUTTING_DOWN.to_bytes())
                break
            if self.channel.write_buffer_size() > WRITE_HIGH_WATER:
                await self._drain()
            event = self.conn.next_event()
            if event is NEED_DATA:
                data = await self._read()
                if not data:
                    return
                self.conn.receive_data(data)
                continue
            assert isinstance(event, Event)
            await self._pace()
            await self._answer(event)
            if self.conn.awaiting_tls and not await self._handshake():
                return
        await self._drain()

    async def _pace(self) -> None:
        delay = self.pace.delay(time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)  # the client is slowed down, never refused

    async def _answer(self, event: Event) -> None:
        if isinstance(event, (Retr, Top)):
            await self._send_message(event)  # answers by itself
            return
        try:
            reply = await self._decide(event)
        except Exception as exc:  # a bug or a store failure costs this command a -ERR, never a traceback
            self.log.event("pop3.error", level="error", command=type(event).__name__, error=type(exc).__name__,
                           detail=str(exc)[:300])
            reply = r.TEMP_FAILURE if not isinstance(event, Quit) else r.UPDATE_FAILED
        self.channel.write(self.conn.send(reply))
        self._after(event, reply)

    def _after(self, event: Event, reply: Pop3Reply) -> None:
        if reply.is_error:
            self.log.event("pop3.reject", command=type(event).__name__.upper(), text=reply.text, code=reply.code)
        if reply in (r.AUTH_BANNED, r.IN_USE, r.MAILDROP_UNAVAILABLE):
            self.conn.close()  # nothing more this connection could do

    async def _read(self) -> bytes:
        await self._drain()
        logged_in = self.conn.state is State.TRANSACTION
        section = self.ctx.config.pop3
        seconds = section.idle_timeout if logged_in else section.login_timeout - (time.monotonic() - self.started)
        if seconds <= 0:
            return self._timed_out()
        self.idle = self.conn.phase is Phase.COMMAND
        try:
            with self._watchdog.waiting(seconds):
                return await self.channel.read()
        except TimeoutError:
            return self._timed_out()
        finally:
            self.idle = False

    def _timed_out(self) -> bytes:
        self.log.event("pop3.timeout", level="warning", state=self.conn.state.value)
        self.channel.write(r.TIMEOUT.to_bytes())  # RFC 1939 3: the autologout changes nothing
        self.channel.close()
        return b""

    async def _drain(self) -> None:
        """Wait for the client to take what it was sent: within idle_timeout once logged in, and
        before login within what is left of login_timeout (a client that never reads is cut off)."""
        if not self.channel.must_drain:
            return
        section = self.ctx.config.pop3
        seconds = section.idle_timeout
        if self.conn.state is not State.TRANSACTION:
            seconds = min(seconds, max(0.0, section.login_timeout - (time.monotonic() - self.started)))
        try:
            with self._watchdog.waiting(seconds):
                await self.channel.drain()
        except TimeoutError:
            self.log.event("pop3.timeout", level="warning", state=self.conn.state.value, phase="write")
            self.channel.abort()
            raise ConnectionAbortedError("client does not read its responses") from None

    async def _handshake(self) -> bool:
        try:
            await self._drain()
            await self.channel.start_tls(self.ctx.tls.context(), self.ctx.config.smtp.timeouts.tls_handshake)
        except (OSError, TimeoutError, ChannelClosed) as exc:
            self.log.event("pop3.tls", level="warning", result="failure", error=type(exc).__name__)
            return False
        self.conn.start_tls()  # RFC 2595 4: nothing from before the handshake survives
        self.tls_info = describe_tls(self.channel.ssl_object())
        self.login = self._login_driver()
        self.log.event("pop3.tls", result="success", **self.tls_info)
        return True

    def shut_down_if_idle(self) -> bool:
        """At server stop: an idle session gets -ERR [SYS/TEMP] and is closed (nothing is deleted)."""
        self.stopping = True
        if not self.idle:
            return False
        self.conn.close()
        self.channel.write(r.SHUTTING_DOWN.to_bytes())
        self.channel.close()
        self.log.event("pop3.shutdown")
        return True

    def end_session(self, reply: Reply) -> None:
        """The account's credentials changed (``hardmail.server.sessions``): close without the
        UPDATE state, at once when waiting for the client, else after the command in progress."""
        self.ending = r.SESSION_ENDED
        self.log.event("pop3.session_ended", account=self.account)
        if self.idle or self.channel.must_drain:
            self.conn.close()
            self.channel.write(r.SESSION_ENDED.to_bytes())
            self.channel.close()
            self.channel.interrupt(ConnectionAbortedError("session ended"))

    # ----- decisions --------------------------------------------------------------------
    async def _decide(self, event: Event) -> Pop3Reply:
        if isinstance(event, Pass):
            return await self._logged_in(await self.login.password_login(event.user, event.password, "USER"))
        if isinstance(event, Auth):
            return await self._auth_start(event)
        if isinstance(event, AuthResponse):
            return await self._auth_response(event)
        if isinstance(event, Stls):
            return self._stls(event)
        if isinstance(event, Quit) and event.update:
            return await self._update(event)
        return event.reply

    def _stls(self, event: Stls) -> Pop3Reply:
        try:
            self.ctx.tls.context()
        except Exception:
            return r.TLS_UNAVAILABLE
        return event.reply

    async def _auth_start(self, event: Auth) -> Pop3Reply:
        initial = None
        if event.initial_response is not None:
            try:
                initial = sasl.decode_response(event.initial_response)
            except sasl.SaslDecodeError:
                return r.BAD_BASE64
        return await self._logged_in(await self.login.start(event.mechanism, initial))

    async def _auth_response(self, event: AuthResponse) -> Pop3Reply:
        if event.cancelled:
            self.login.cancel()
            return r.AUTH_ABORTED  # RFC 5034 4
        try:
            data = sasl.decode_response(event.data)
        except sasl.SaslDecodeError:
            self.login.cancel()
            return r.BAD_BASE64
        return await self._logged_in(await self.login.respond(data))

    async def _logged_in(self, result: LoginResult) -> Pop3Reply:
        reply = _LOGIN_REPLIES.get(result.kind)
        if result.kind == "challenge":
            return r.continuation(sasl.encode_challenge(result.challenge))
        if reply is not None:
            return reply
        assert result.kind == "success" and result.account is not None
        self.account = result.account
        return await self._open_maildrop(result.account)

    async def _open_maildrop(self, account: str) -> Pop3Reply:
        try:
            maildrop, self.lock = await open_maildrop(self.ctx.mailbox_store(), self._maildir(account), account)
        except MaildropInUse:
            self.log.event("pop3.in_use", level="warning", account=account)
            return self._not_opened(r.IN_USE)  # RFC 2449 8.1.1
        except Exception as exc:  # the index or the Maildir cannot be read now
            self.log.event("pop3.maildrop_error", level="error", account=account, error=type(exc).__name__,
                           detail=str(exc)[:300])
            return self._not_opened(r.MAILDROP_UNAVAILABLE)
        self.conn.maildrop = maildrop
        size = sum(m.size for m in maildrop.messages)
        self.log.event("pop3.maildrop", account=account, messages=len(maildrop), size=size)
        return r.ok(f"Logged in, {len(maildrop)} messages ({size} octets).")

    def _not_opened(self, reply: Pop3Reply) -> Pop3Reply:
        """The login worked but the maildrop cannot be had: no session of the account is left."""
        self.account = None
        self.ctx.sessions.remove(self.id)
        return reply

    def _maildir(self, account: str) -> Path:
        return self.ctx.acceptor.maildir.mailbox_path(account)

    async def _update(self, event: Quit) -> Pop3Reply:
        """RFC 1939 6: remove the marked messages, durably, before the +OK."""
        assert self.account is not None
        if event.deleted:
            store = self.ctx.mailbox_store()
            await store.store_flags(self.account, INBOX, event.deleted, "add", ["\\Deleted"])
            removed = await store.expunge(self.account, INBOX, event.deleted)
            self.log.event("pop3.update", account=self.account, marked=len(event.deleted), removed=len(removed))
        return event.reply

    # ----- RETR and TOP -----------------------------------------------------------------
    async def _send_message(self, event: Retr | Top) -> None:
        try:
            handle = await self._open_message(event.uid)
        except Exception as exc:  # the index cannot be read now
            self.log.event("pop3.error", level="error", command=type(event).__name__, error=type(exc).__name__,
                           detail=str(exc)[:300])
            self.channel.write(self.conn.send(r.TEMP_FAILURE))
            return
        if handle is None:  # expunged meanwhile by an IMAP session
            self.channel.write(self.conn.send(r.err("The message was removed by another session.")))
            return
        self.channel.write(self.conn.send(event.reply))
        try:
            await self._stream(handle, MessageEncoder(event.lines if isinstance(event, Top) else None))
        except OSError as exc:  # after the +OK no -ERR can follow: the client must see the cut
            self.log.event("pop3.read_error", level="error", uid=event.uid, error=type(exc).__name__)
            self.channel.abort()
            raise ConnectionAbortedError("message file unreadable") from exc
        finally:
            await asyncio.to_thread(handle.close)
        self.retrieved += isinstance(event, Retr)

    async def _open_message(self, uid: int) -> BinaryIO | None:
        assert self.account is not None
        for _ in range(2):  # a flag change by IMAP may rename the file between the look-up and the open
            path = await self.ctx.mailbox_store().message_path(self.account, INBOX, uid)
            if path is None:
                return None
            handle = await asyncio.to_thread(open_file, path)
            if handle is not None:
                return handle
        return None

    async def _stream(self, handle: BinaryIO, encoder: MessageEncoder) -> None:
        while not encoder.done:
            chunk = await asyncio.to_thread(handle.read, READ_CHUNK)
            if not chunk:
                break
            self.channel.write(encoder.feed(chunk))
            if self.channel.must_drain:
                await self._drain()  # the client takes its bytes before the next chunk is read
        self.channel.write(encoder.finish())


_LOGIN_REPLIES: dict[str, Pop3Reply] = {
    "failure": r.AUTH_FAILED,
    "tempfail": r.AUTH_TEMP_FAILURE,
    "refused": r.AUTH_BANNED,
    "encryption_required": r.PLAINTEXT_REFUSED,
    "aborted": r.AUTH_ABORTED,
}

register_session("pop3", Pop3Session)
register_session("pop3s", Pop3Session)
