"""One IMAP session (RFC 9051, RFC 3501): pumps bytes between a Channel and the sans-IO core
(:mod:`hardmail.proto.imap`), and runs each command through its handler.

This module owns the connection's life: the greeting (or the refusal at connect), implicit TLS and
STARTTLS, the time limits (``[imap] login_timeout`` before login, ``idle_timeout`` after it, IDLE
included), the command pace (``commands_per_second``: a faster client waits, it is not refused),
back-pressure (no command is read while the client leaves more than WRITE_HIGH_WATER bytes of
responses unread), the end of a session whose account was disabled or whose password changed
(:mod:`hardmail.server.sessions`), and one catch per command: an error becomes ``NO`` or ``BAD``
with a clear text, never a traceback. The commands themselves live in ``server/imap_*.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hardmail.auth.pool import CLIENT_GONE
from hardmail.core.ids import new_id
from hardmail.core.replies import Reply
from hardmail.mailbox import FolderError
from hardmail.ops.log import EventLogger
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.connection import ImapServerConnection
from hardmail.proto.imap.encode import continuation, tagged, untagged
from hardmail.proto.imap.state import ConnState, ImapOptions
from hardmail.server import imap_auth, imap_fetch, imap_idle, imap_mailboxes, imap_search, imap_select, imap_store
from hardmail.server.channel import Channel, ChannelClosed
from hardmail.server.context import ServerContext
from hardmail.server.hooks import SessionFacts
from hardmail.server.imap_common import CommandFailed, Done, bad, folder_error_done, ok
from hardmail.server.imap_limits import ConnectionCounts, connection_counts
from hardmail.server.listener import register_session
from hardmail.server.pacing import CommandPacer
from hardmail.server.tls import describe_tls
from hardmail.server.watchdog import Watchdog

WRITE_HIGH_WATER = 64 * 1024  # unread response bytes before the session stops taking commands
BATCH_LIMIT = 16 * 1024  # held response bytes written at once
WRITE_TIMEOUT = 300.0  # seconds a client may take to read what it was sent
MAX_BAD_COMMANDS = 20  # RFC 9051 has no limit; a client this broken (or hostile) is dropped
LITERAL_LIMIT = 64 * 1024  # literals of commands other than APPEND (RFC 7888 gives no number)

Handler = Callable[["ImapSession", Any], Awaitable[Done]]


def capabilities(session: ImapSession) -> list[str]:
    """RFC 9051 7.2.2: what this session offers now (login and TLS state change it)."""
    base = ["IMAP4rev2", "IMAP4rev1"]
    if session.account is None:
        caps = base + (["STARTTLS"] if session.kind == "imap" and not session.tls_active else [])
        if session.plaintext_refused:
            caps.append("LOGINDISABLED")  # RFC 9051 6.2.3
        caps += ["LITERAL-", "SASL-IR", "ID", "ENABLE"]
        if not session.plaintext_refused:
            caps += [f"AUTH={name}" for name in imap_auth.MECHANISMS]
        return caps
    return [
        *base, "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "CREATE-SPECIAL-USE", "NAMESPACE", "LITERAL+", "ENABLE",
        "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "UNSELECT", "LIST-EXTENDED", "LIST-STATUS", "SASL-IR",
        "ID", "QUOTA", "QUOTA=RES-STORAGE", "QUOTA=RES-MESSAGE", f"APPENDLIMIT={session.append_limit}", "BINARY",
        "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "CHILDREN", "STATUS=SIZE",
        "UTF8=ACCEPT",
    ]


class ImapSession:
    def __init__(self, ctx: ServerContext, kind: str, channel: Channel) -> None:
        self.ctx = ctx
        self.kind = kind
        self.channel = channel
        self.settings = ctx.config.imap
        self.id = new_id()
        self.peer_ip, self.peer_port = channel.peer()
        self.log = EventLogger(session=self.id, peer=self.peer_ip, listener=kind)
        self.append_limit = imap_store.append_limit(ctx.config)
        self.conn = ImapServerConnection(self._options())
        self.tls_info: dict[str, str] | None = None
        self.account: str | None = None
        self.login = imap_auth.ImapLogin(self)
        self.selected: imap_select.SelectedFolder | None = None
        self.saved_uids: list[int] = []  # RFC 5182: the last SEARCH RETURN (SAVE) result, as UIDs
        self.idle = False  # waiting for the next command: safe to close at shutdown
        self.reading = False
        self.stopping = False
        self.ending: str | None = None  # set by end_session: the BYE text, sent instead of the next answer
        self.commands = 0
        self.bad_commands = 0
        self._held: list[bytes] = []
        self._held_size = 0
        self._watchdog = Watchdog(channel)
        self._pacer = CommandPacer(self.settings.commands_per_second, max_delay=5.0)  # a command waits at most 5 s
        self._counts: ConnectionCounts = connection_counts(ctx)
        self._counted_ip = False
        self.login_deadline = time.monotonic() + self.settings.login_timeout

    # ----- state --------------------------------------------------------------------------------
    @property
    def tls_active(self) -> bool:
        return self.tls_info is not None

    @property
    def condstore(self) -> bool:
        """RFC 7162 3.1: on after ENABLE CONDSTORE (or QRESYNC) or any CONDSTORE-enabling command."""
        return self.conn.condstore_enabled

    @condstore.setter
    def condstore(self, value: bool) -> None:
        if value:
            self.conn.enable("CONDSTORE")

    @property
    def qresync(self) -> bool:
        return self.conn.qresync_enabled

    @property
    def utf8(self) -> bool:
        """RFC 6855 3 / RFC 9051 5.1: folder names are UTF-8 on the wire."""
        return self.conn.utf8_enabled

    @property
    def rev2(self) -> bool:
        """ENABLE IMAP4rev2 was given; else the client is served as an IMAP4rev1 client."""
        return self.conn.imap4rev2_enabled

    @property
    def closed(self) -> bool:
        return self.conn.state is ConnState.LOGOUT

    @property
    def plaintext_refused(self) -> bool:
        """RFC 9051 6.2.3 and 11.1: no password over a clear channel unless the admin allows it."""
        return not self.tls_active and not self.settings.allow_plaintext_login

    def _options(self) -> ImapOptions:
        return ImapOptions(max_line=self.settings.max_line, max_literal=LITERAL_LIMIT,
                           append_limit=self.append_limit, literal_plus=False,
                           starttls_available=self.kind == "imap", max_bad_commands=MAX_BAD_COMMANDS)

    def facts(self) -> SessionFacts:
        return SessionFacts(session_id=self.id, listener=self.kind, peer_ip=self.peer_ip, peer_port=self.peer_port,
                            helo=None, tls=self.tls_info, account=self.account)

    # ----- writing ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Hold a response for the next write; a large batch is written at once."""
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > BATCH_LIMIT:
            self.flush()

    def send_untagged(self, text: str | bytes) -> None:
        self.send(untagged(text))

    def flush(self) -> None:
        if not self._held:
            return
        batch = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_size = 0
        self.channel.write(batch)

    async def pace(self) -> None:
        """Between the parts of a long response: wait while the client has too much unread."""
        if self.channel.write_buffer_size() + self._held_size > WRITE_HIGH_WATER:
            await self.drain()

    async def send_large(self, data: bytes, chunk: int = 64 * 1024) -> None:
        """Write a big response (a message literal) in pieces, each after the client took the last."""
        self.flush()
        for start in range(0, len(data), chunk):
            self.channel.write(data[start:start + chunk])
            await self.pace()

    async def drain(self) -> None:
        self.flush()
        if not self.channel.must_drain:
            return
        login = self.account is None  # before login the login deadline holds here too
        try:
            with self._watchdog.waiting(min(WRITE_TIMEOUT, self._login_left()) if login else WRITE_TIMEOUT):
                await self.channel.drain()
        except TimeoutError:
            self.log.event("imap.timeout", level="warning", phase="login" if login else "write")
            self.channel.abort()
            raise ConnectionAbortedError("client does not read its responses") from None

    # ----- the connection's life ------------------------------------------------------------------
    async def run(self) -> None:
        self.log.event("imap.connect", port=self.peer_port)
        gone = CLIENT_GONE.set(getattr(self.channel, "lost", None))
        try:
            refusal = await self._refusal_at_connect()
            if refusal is not None:
                self.log.event("imap.reject", command="CONNECT", text=refusal)
                if self.kind != "imaps":
                    self.channel.write(untagged(f"BYE {refusal}"))
                return
            if self.kind == "imaps" and not await self._handshake():
                return
            caps = " ".join(capabilities(self))
            self.send_untagged(f"OK [CAPABILITY {caps}] {self.ctx.config.server.hostname} IMAP server ready")
            await self._pump()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self.log.event("imap.connection_error", level="warning", error=type(exc).__name__)
        finally:
            await self._finish()
            CLIENT_GONE.reset(gone)

    async def _refusal_at_connect(self) -> str | None:
        """The hooks' verdict (ranges, bans, connection limits), then the IMAP cap per address."""
        for hook in self.ctx.hooks:
            reply: Reply | None = await hook.on_connect(self.facts())
            if reply is not None:
                return "[UNAVAILABLE] " + reply.lines[0]
        if not self._counts.open_ip(self.peer_ip, self.settings.connections_per_ip):
            self.log.event("imap.limit", level="warning", reason="connections per address")
            return "[UNAVAILABLE] Too many connections from your address"
        self._counted_ip = True
        return None

    async def _finish(self) -> None:
        self.ctx.sessions.remove(self.id)
        if self.selected is not None:
            self.selected.close()
        if self._counted_ip:
            self._counts.close_ip(self.peer_ip)
        self.login.release()
        self._watchdog.stop()
        self.flush()
        self.channel.close()
        for hook in self.ctx.hooks:
            await hook.on_disconnect(self.facts())
        self.log.event("imap.disconnect", commands=self.commands, errors=self.bad_commands, account=self.account)

    async def _pump(self) -> None:
        while not self.closed:
            if self.ending is not None:
                self.send_untagged(f"BYE {self.ending}")
                break
            if self.stopping:
                self.send_untagged("BYE [UNAVAILABLE] Server shutting down, try again later")
                break
            if self.channel.write_buffer_size() + self._held_size > WRITE_HIGH_WATER:
                # a client that does not read its responses gets no more work done: wait while
                # the transport holds more than its own high-water mark (64 KiB, 512 KiB with TLS)
                await self.drain()
            event = self.conn.next_event()
            if isinstance(event, c.NeedData):
                data = await self.read()
                if not data:
                    return
                self.conn.receive_data(data)
                continue
            if not await self._event(event):
                return
        await self.drain()

    async def read(self) -> bytes:
        """The client's next bytes, b"" at its end or when a time limit ran out (after a BYE)."""
        await self.drain()
        if self.ending is not None:
            return b""
        seconds = self.settings.idle_timeout
        if self.account is None:  # the whole time before login, not each wait (a NOOP does not renew it)
            seconds = self._login_left()
        self.idle = self.conn.buffered == 0
        self.reading = True
        try:
            if seconds <= 0:  # a client whose commands never stop coming is over its time too
                raise TimeoutError
            with self._watchdog.waiting(seconds):
                return await self.channel.read()
        except TimeoutError:
            self.log.event("imap.timeout", level="info", phase="login" if self.account is None else "idle")
            self.channel.write(untagged("BYE Autologout; idle for too long"))
            self.channel.close()
            return b""
        finally:
            self.idle = self.reading = False

    def _login_left(self) -> float:
        return max(0.0, self.login_deadline - time.monotonic())

    async def _handshake(self) -> bool:
        try:
            await self.drain()
            context, timeout = self.ctx.tls.context(), self.ctx.config.smtp.timeouts.tls_handshake
            await self.channel.start_tls(context, timeout)  # implicit TLS: keeps a ClientHello already read
        except (OSError, TimeoutError, ChannelClosed) as exc:
            self.log.event("imap.tls", level="warning", result="failure", error=type(exc).__name__)
            return False
        if self.kind == "imap":
            self.conn.start_tls()  # RFC 9051 6.2.1: nothing sent before the handshake is kept
        self.tls_info = describe_tls(self.channel.ssl_object())
        self.log.event("imap.tls", result="success", **self.tls_info)
        return True

    def end_session(self, reply: Reply) -> None:
        """The account's credentials changed (:mod:`hardmail.server.sessions`): BYE and close, at
        once when waiting for the client (IDLE included), else after the command in progress."""
        self.ending = "Your session has ended; please sign in again"
        self.log.event("imap.session_ended", account=self.account)
        draining = self.channel.must_drain
        if not (self.reading or draining):
            return
        self.conn.logged_out()
        self.flush()
        self.channel.write(untagged(f"BYE {self.ending}"))
        self.channel.close()
        self.channel.interrupt(ConnectionAbortedError("session ended"))

    def shut_down_if_idle(self) -> bool:
        """At server stop: an idle session (IDLE included) gets BYE and is closed; True when that
        happened. A busy one says BYE after the command in progress."""
        self.stopping = True
        if not self.idle:
            return False
        self.conn.logged_out()
        self.flush()
        self.channel.write(untagged("BYE [UNAVAILABLE] Server shutting down, try again later"))
        self.channel.close()
        self.log.event("imap.shutdown")
        return True

    # ----- events -------------------------------------------------------------------------------
    async def _event(self, event: c.Event) -> bool:
        """Answer one event; False when the connection must end (a failed TLS handshake)."""
        if isinstance(event, c.Command):
            done = await self._command(event)
            if isinstance(event, c.StartTls) and done.status == "OK":
                return await self._handshake()  # RFC 9051 6.2.1: right after the OK
        elif isinstance(event, c.ContinuationNeeded):
            refusal = await self._literal_refusal(event)
            if refusal is not None:  # RFC 9051 7.5: answered now, the client sends no data
                self.conn.refuse_literal()
                self.send(tagged(event.tag, refusal.status, refusal.text, refusal.code))
                return True
            self.send(continuation(event.text))
            self.flush()
        elif isinstance(event, c.BadCommand | c.LiteralTooLarge | c.LineTooLong):
            self._refused(event)
        else:  # a SASL line or DONE outside their exchange: the core should not give them
            self.send(untagged("BAD Unexpected input"))
        return True

    async def _literal_refusal(self, event: c.ContinuationNeeded) -> Done | None:
        """Before ``+`` for an APPEND's message: a missing folder or a full quota is said at once."""
        if event.append_mailbox is None or self.account is None:
            return None
        try:
            return await imap_store.append_refusal(self, event.append_mailbox, event.size)
        except Exception as exc:  # the APPEND itself will say what is wrong
            self.log.event("imap.error", level="error", command="APPEND", error=type(exc).__name__,
                           detail=str(exc)[:300])
            return None

    def _refused(self, event: c.BadCommand | c.LiteralTooLarge | c.LineTooLong) -> None:
        self.bad_commands += 1
        self.log.event("imap.bad", level="info", tag_present=event.tag != "*", text=event.text)
        self.send(tagged(event.tag, event.status, event.text, event.code))
        if getattr(event, "fatal", False):  # the core counts bad commands in a row (max_bad_commands)
            self.send_untagged("BYE Too many errors, closing connection")
            self.conn.logged_out()

    async def _command(self, command: c.Command) -> Done:
        self.commands += 1
        delay = self._pacer.delay(time.monotonic())
        if delay > 0:  # a client over commands_per_second waits its turn (a tarpit, not a refusal)
            await asyncio.sleep(delay)
        name = type(command).__name__.upper()
        handler = HANDLERS.get(type(command))
        try:
            done = bad("Command not supported") if handler is None else await handler(self, command)
            if self.selected is not None and name not in imap_select.NO_UPDATES_AFTER:
                await self.selected.send_updates(self, expunges=not imap_select.defers_expunge(command))
        except CommandFailed as failed:
            done = failed.done
        except FolderError as exc:  # e.g. the selected folder was deleted by another session
            done = folder_error_done(exc)
        except ConnectionError:
            raise
        except Exception as exc:  # one catch per command: a clear NO, the cause in the log
            self.log.event("imap.error", level="error", command=name, error=type(exc).__name__,
                           detail=str(exc)[:300])
            done = Done("NO", "Internal server error; the command was not completed", "SERVERBUG")
        if done.status != "OK":
            self.log.event("imap.refused", level="info", command=name, status=done.status, code=done.code,
                           text=done.text)
        self.send(tagged(command.tag, done.status, done.text, done.code))
        return done

    # ----- commands of every state ------------------------------------------------------------------
    async def _capability(self, command: c.Capability) -> Done:
        self.send_untagged("CAPABILITY " + " ".join(capabilities(self)))
        return ok("CAPABILITY completed")

    async def _noop(self, command: c.Noop | c.Check) -> Done:
        if self.selected is not None:
            await self.selected.refresh(self)
        return ok("NOOP completed" if isinstance(command, c.Noop) else "CHECK completed")

    async def _logout(self, command: c.Logout) -> Done:
        self.send_untagged("BYE Logging out")  # RFC 9051 6.1.3
        return ok("LOGOUT completed")

    async def _starttls(self, command: c.StartTls) -> Done:
        try:
            self.ctx.tls.context()
        except Exception:
            self.conn.start_tls()  # nothing is negotiated: the core takes commands again
            self.conn.tls_active = False
            return bad("TLS is not available now")
        return ok("Begin TLS negotiation now")

    async def _id(self, command: c.Id) -> Done:
        if command.params:  # RFC 2971 3.1: what the client says it is, for the log
            fields = {str(k)[:30].lower(): (v or "")[:100] for k, v in command.params[:10]}
            self.log.event("imap.id", client=fields.get("name"), version=fields.get("version"))
        self.send_untagged('ID ("name" "hardmail" "vendor" "hardmail")')
        return ok("ID completed")

    async def _enable(self, command: c.Enable) -> Done:
        # The core turned on what it offers (QRESYNC with CONDSTORE, RFC 7162 3.2.3); say which.
        self.send_untagged("ENABLED" + "".join(" " + cap for cap in command.enabled))  # RFC 5161 3.2
        return ok("ENABLE completed")


HANDLERS: dict[type, Handler] = {
    c.Capability: ImapSession._capability,
    c.Noop: ImapSession._noop,
    c.Check: ImapSession._noop,
    c.Logout: ImapSession._logout,
    c.StartTls: ImapSession._starttls,
    c.Id: ImapSession._id,
    c.Enable: ImapSession._enable,
}
for _module in (imap_auth, imap_mailboxes, imap_select, imap_fetch, imap_store, imap_search, imap_idle):
    HANDLERS.update(_module.HANDLERS)


def _factory(ctx: ServerContext, kind: str, channel: Channel) -> ImapSession:
    return ImapSession(ctx, kind, channel)


register_session("imap", _factory)
register_session("imaps", _factory)
