"""The sans-IO IMAP server connection: bytes in, events out (RFC 9051 2.2, 4.3, 5.5).

No asyncio, no sockets, no clock. The session feeds bytes with :meth:`receive_data` and takes events
from :meth:`next_event` until it returns ``NEED_DATA``; it answers each event with bytes built by
``proto.imap.encode`` and tells the core about outcomes the core cannot know (a login succeeded:
:meth:`authenticated`; a SELECT succeeded: :meth:`selected`). What follows from the command alone
the core does itself: LOGOUT ends input; SELECT, EXAMINE, CLOSE and UNSELECT leave the selected
state (RFC 9051 6.3.2); ENABLE turns on what it knows and offers (``Enable.enabled``); a CONDSTORE
enabling command turns CONDSTORE on (RFC 7162 3.1); after STARTTLS input is held until
:meth:`start_tls` (or :meth:`tls_refused`); AUTHENTICATE and IDLE lines are read after
:meth:`expect_sasl_response` / :meth:`expect_idle_done`.

Framing: a command is its first line plus, for each literal announced at a line end, the literal's
data and the next line. A synchronizing literal ``{n}`` yields :class:`ContinuationNeeded` (the
session writes ``+ ...``) unless it is refused first (RFC 7888 4, RFC 7889); ``{n+}`` is read at
once (LITERAL+), or refused over 4096 bytes under LITERAL-, its data skipped. A command's text is
bounded by ``max_line`` and its literal data by the literal limit, so buffered input stays below
their sum however the client behaves; refused data is skipped as it arrives, never kept.
"""

from __future__ import annotations

import re
from enum import Enum

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.grammar import COMMANDS, UID_COMMANDS, append_target, parse_command
from hardmail.proto.imap.lexer import ParseError
from hardmail.proto.imap.parser import Context
from hardmail.proto.imap.searchkeys import ModSeqKey, walk
from hardmail.proto.imap.state import ConnState, ImapOptions

# tag SP command-name; RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">
_HEAD = re.compile(rb'([^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+) ([^(){ \x00-\x1f\x7f%*"\\\]\x80-\xff]+)(?= |$)')
_TAG_ONLY = re.compile(rb'([^(){ \x00-\x1f\x7f%*"\\+\x80-\xff]+)(?: |$)')
_UID_VERB = re.compile(rb" ([A-Za-z]+)")
_LITERAL_TAIL = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}$")
LITERAL_MINUS_MAX = 4096  # RFC 7888 4
_TAIL_KEEP = 32  # bytes of a skipped long line kept to see a literal announced at its end


class Phase(Enum):
    COMMAND = "command"
    LITERAL = "literal"  # reading literal data into the command
    SKIP = "skip"  # dropping the data of a refused non-synchronizing literal
    SASL = "sasl"
    IDLE = "idle"
    TLS = "tls"  # OK to STARTTLS given; input held (and dropped by start_tls())
    CLOSED = "closed"


class _TooLong:
    pass


_TOO_LONG = _TooLong()


class ImapServerConnection:
    """One IMAP server connection's protocol state."""

    def __init__(self, options: ImapOptions | None = None) -> None:
        self.options = options or ImapOptions()
        self.state = ConnState.AUTHENTICATED if self.options.preauth else ConnState.NOT_AUTHENTICATED
        self.tls_active = self.options.tls_active
        self.enabled: set[str] = set()
        self.bad_commands = 0
        self._buf = bytearray()
        self._scanned = 0  # leading bytes of _buf known to hold no LF (a slow line is scanned once)
        self._phase = Phase.COMMAND
        self._discarding = False
        self._tail = b""
        self._sasl_tag = "*"
        self._idle_tag = "*"
        self._tag: str | None = None
        self._doomed: c.Event | None = None
        self._reset_command()

    # ----- what the session tells the core ------------------------------------------------------
    @property
    def utf8_enabled(self) -> bool:
        """UTF8=ACCEPT (RFC 6855 3) or IMAP4rev2 (RFC 9051 5.1) in effect: names are UTF-8."""
        return bool(self.enabled & {"UTF8=ACCEPT", "IMAP4REV2"})

    @property
    def imap4rev2_enabled(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore_enabled(self) -> bool:
        return bool(self.enabled & {"CONDSTORE", "QRESYNC"})

    @property
    def qresync_enabled(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def enable(self, *caps: str) -> None:
        """Turn on an extension outside ENABLE (RFC 7162 3.1: a CONDSTORE-enabling command)."""
        self.enabled.update(cap.upper() for cap in caps)

    def authenticated(self) -> None:
        self.state = ConnState.AUTHENTICATED

    def selected(self) -> None:
        """SELECT/EXAMINE succeeded (the core already left SELECTED when it parsed the command)."""
        self.state = ConnState.SELECTED

    def deselected(self) -> None:
        self.state = ConnState.AUTHENTICATED

    def logged_out(self) -> None:
        self.state = ConnState.LOGOUT
        self._phase = Phase.CLOSED
        self._buf.clear()
        self._scanned = 0

    def start_tls(self) -> None:
        """The TLS handshake starts: drop whatever came in the clear after STARTTLS (RFC 9051 6.2.1)."""
        self._buf.clear()
        self._scanned = 0
        self._reset_command()
        self._discarding = False
        self.tls_active = True
        self._phase = Phase.COMMAND

    def tls_refused(self) -> None:
        """The session answered STARTTLS with NO/BAD after all: take commands again, in the clear."""
        if self._phase is Phase.TLS:
            self._phase = Phase.COMMAND

    def expect_sasl_response(self) -> None:
        """The session wrote a ``+`` challenge; the next line is a SaslResponse."""
        self._phase = Phase.SASL

    def expect_idle_done(self) -> None:
        """The session wrote ``+ idling``; the next line must be DONE (RFC 2177 3)."""
        self._phase = Phase.IDLE

    # ----- input ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the client. Between the OK to STARTTLS and :meth:`start_tls` input is
        dropped at once (it would be dropped by the handshake anyway, RFC 9051 6.2.1)."""
        if self._phase not in (Phase.CLOSED, Phase.TLS):
            self._buf += data

    def next_event(self) -> c.Event | c.NeedData:
        """The next event; bad input always gives an event, never an exception."""
        while True:
            try:
                event = self._step()
            except Exception:  # a bug must not become a traceback: drop the command, answer BAD
                self._reset_command()
                self._phase = Phase.COMMAND if self._phase is not Phase.CLOSED else Phase.CLOSED
                event = c.BadCommand("*", "Internal error reading the command")
            if event is not None:
                return self._count(event)

    def _count(self, event: c.Event | c.NeedData) -> c.Event | c.NeedData:
        if isinstance(event, c.BadCommand | c.LineTooLong | c.LiteralTooLarge):
            self.bad_commands += 1
            if isinstance(event, c.BadCommand) and self.bad_commands > self.options.max_bad_commands:
                return c.BadCommand(event.tag, "Too many bad commands", fatal=True)
        elif isinstance(event, c.Command):
            self.bad_commands = 0
        return event

    def _step(self) -> c.Event | c.NeedData | None:
        phase = self._phase
        if phase in (Phase.TLS, Phase.CLOSED):
            return c.NEED_DATA
        if phase in (Phase.LITERAL, Phase.SKIP):
            return self._literal_data()
        line = self._take_line()
        if line is None:
            return c.NEED_DATA
        if phase is Phase.SASL:
            self._phase = Phase.COMMAND
            if isinstance(line, _TooLong):
                return c.LineTooLong(self._sasl_tag, "SASL response too long")
            return c.SaslResponse(line)
        if phase is Phase.IDLE:
            self._phase = Phase.COMMAND
            if isinstance(line, bytes) and line.upper() == b"DONE":
                return c.IdleDone(self._idle_tag)
            return c.BadCommand(self._idle_tag, "Expected DONE to end IDLE")
        return self._command_line(line)

    def _take_line(self) -> bytes | _TooLong | None:
        """The next line without its CRLF, _TOO_LONG for a skipped long one, None to wait."""
        buf = self._buf
        newline = buf.find(b"\n", self._scanned)
        self._scanned = len(buf) if newline < 0 else 0
        if self._discarding:
            piece = buf if newline < 0 else buf[:newline + 1]
            self._tail = (self._tail + bytes(piece))[-_TAIL_KEEP:]
            del buf[:len(piece)]
            self._scanned = 0
            if newline < 0:
                return None
            self._discarding = False
            self._tail = self._tail.rstrip(b"\r\n")
            return _TOO_LONG
        limit = self._line_room()
        if newline < 0:
            if len(buf) > limit + 1:
                self._line_overflow()
                return self._take_line()
            return None
        line = bytes(buf[:newline])
        del buf[:newline + 1]
        line = line[:-1] if line.endswith(b"\r") else line
        if len(line) > limit:
            self._note_head(line)
            self._tail = line[-_TAIL_KEEP:]
            return _TOO_LONG
        return line

    def _line_room(self) -> int:
        if self._phase is not Phase.COMMAND:
            return self.options.max_line
        return max(self.options.max_line - self._line_bytes, 0)

    def _line_overflow(self) -> None:
        self._note_head(bytes(self._buf[:256]))
        self._discarding = True
        self._tail = b""

    def _note_head(self, head: bytes) -> None:
        """A long first line: remember its tag (if any) so the BAD names it."""
        if self._phase is Phase.COMMAND and self._tag is None and self._doomed is None:
            match = _TAG_ONLY.match(head)
            self._tag = match.group(1).decode("ascii") if match else "*"
            self._doomed = c.LineTooLong(self._tag)

    # ----- commands -------------------------------------------------------------------------------
    def _reset_command(self) -> None:
        self._parts = bytearray()
        self._tag = None
        self._verb = ""
        self._verb_end = 0
        self._line_bytes = 0
        self._literal_bytes = 0
        self._literal_limit = self.options.max_literal
        self._pending = 0
        self._doomed = None

    def _command_line(self, line: bytes | _TooLong) -> c.Event | None:
        if isinstance(line, _TooLong):
            if self._doomed is None:
                self._doomed = c.LineTooLong(self._tag or "*")
            line = self._tail
        elif self._tag is None and self._doomed is None:
            if not line.strip():
                return None  # an empty line is no command; ignore it as most servers do
            self._start(line)
        self._line_bytes += len(line) + 2
        if self._line_bytes > self.options.max_line + 2 and self._doomed is None:
            self._doomed = c.LineTooLong(self._tag or "*")
        if self._doomed is None:
            self._parts += line
        literal = _LITERAL_TAIL.search(line)
        if literal is not None:
            return self._literal_start(int(literal.group(2)), literal.group(3) != b"+")
        return self._finish()

    def _start(self, line: bytes) -> None:
        head = _HEAD.match(line)
        if head is None:
            tag = _TAG_ONLY.match(line)
            self._tag = tag.group(1).decode("ascii") if tag else "*"
            self._doomed = c.BadCommand(self._tag, "Missing command" if tag else "Invalid tag")
            return
        self._tag = head.group(1).decode("ascii")
        self._verb = head.group(2).decode("ascii").upper()
        self._verb_end = head.end()
        entry = COMMANDS.get(self._verb)
        if entry is None:
            self._doomed = c.BadCommand(self._tag, "Unknown command")
        elif self.state not in entry.states:
            self._doomed = c.BadCommand(self._tag, self._state_text())
        elif self._verb == "UID":
            sub = _UID_VERB.match(line, head.end())
            if sub is None or sub.group(1).decode("ascii").upper() not in UID_COMMANDS:
                self._doomed = c.BadCommand(self._tag, "Unknown UID command")
        if self._verb == "APPEND":
            self._literal_limit = self.options.append_limit

    def _state_text(self) -> str:
        if self.state is ConnState.NOT_AUTHENTICATED:
            return f"{self._verb} needs authentication first"
        if self.state is ConnState.SELECTED or self._verb in ("STARTTLS", "LOGIN", "AUTHENTICATE"):
            return f"{self._verb} is not valid after login"
        return f"{self._verb} needs a selected mailbox"

    def _literal_start(self, size: int, sync: bool) -> c.Event | None:
        if self._doomed is not None:
            if sync:  # the client waits for "+": answer now, it sends no data (RFC 9051 7.5)
                return self._finish()
            self._skip(size)
            return None
        limit = self._literal_limit
        if self._literal_bytes + size > limit:
            append = self._verb == "APPEND"  # RFC 7889 4: an APPEND over APPENDLIMIT gets NO [TOOBIG]
            refusal = c.LiteralTooLarge(self._tag or "*", size, limit, sync, "NO" if append else "BAD",
                                        "Message too large" if append else "Literal too large")
            if sync:
                self._reset_command()
                return refusal
            self._doomed = refusal
            self._skip(size)
            return None
        if not sync and not self.options.literal_plus and size > LITERAL_MINUS_MAX:
            self._doomed = c.LiteralTooLarge(self._tag or "*", size, LITERAL_MINUS_MAX, False, "BAD",
                                             "Non-synchronizing literals are limited to 4096 bytes (LITERAL-)")
            self._skip(size)
            return None
        target = self._append_target() if sync and self._verb == "APPEND" else None
        self._literal_bytes += size
        self._parts += b"\r\n"
        self._pending = size
        self._phase = Phase.LITERAL
        return c.ContinuationNeeded(
            tag=self._tag or "*", verb=self._verb, size=size, append_mailbox=target) if sync else None

    def _append_target(self) -> str | None:
        ctx = Context(self._tag or "*", utf8=self.utf8_enabled, qresync=self.qresync_enabled)
        try:
            return append_target(bytes(self._parts), self._verb_end, ctx)
        except Exception:  # only a hint for the session; the full parse decides
            return None

    def refuse_literal(self) -> None:
        """Instead of ``+``: the session answers the command now (tagged NO/BAD) and the client,
        still waiting for the continuation, sends no literal data (RFC 9051 7.5)."""
        if self._phase is Phase.LITERAL:
            self._reset_command()
            self._phase = Phase.COMMAND

    def _skip(self, size: int) -> None:
        self._pending = size
        self._phase = Phase.SKIP
        return None

    def _literal_data(self) -> c.NeedData | None:
        take = min(self._pending, len(self._buf))
        if self._phase is Phase.LITERAL:
            self._parts += self._buf[:take]
        del self._buf[:take]
        self._scanned = 0
        self._pending -= take
        if self._pending:
            return c.NEED_DATA
        self._phase = Phase.COMMAND
        return None

    def _finish(self) -> c.Event:
        if self._doomed is not None:
            doomed = self._doomed
            self._reset_command()
            return doomed
        tag, verb, start, data = self._tag or "*", self._verb, self._verb_end, bytes(self._parts)
        self._reset_command()
        ctx = Context(tag, utf8=self.utf8_enabled, qresync=self.qresync_enabled)
        try:
            command = parse_command(data, verb, start, ctx)
        except ParseError as error:
            return c.BadCommand(tag, error.text, "NO" if error.status == "NO" else "BAD", error.code)
        except Exception:  # a bug must not become a traceback to the client; answer BAD instead
            return c.BadCommand(tag, "Invalid arguments")
        return self._after(command)

    def _after(self, command: c.Command) -> c.Event:
        if isinstance(command, c.Logout):
            self.logged_out()
        elif isinstance(command, c.StartTls):
            if self.tls_active or not self.options.starttls_available:
                text = "TLS is already active" if self.tls_active else "STARTTLS is not available"
                return c.BadCommand(command.tag, text)
            self._phase = Phase.TLS
        elif isinstance(command, c.Enable):
            return self._enable(command)
        elif isinstance(command, c.Select | c.Close | c.Unselect):
            self.state = ConnState.AUTHENTICATED  # RFC 9051 6.3.2: a failing SELECT leaves none selected
        elif isinstance(command, c.Authenticate):
            self._sasl_tag = command.tag
        elif isinstance(command, c.Idle):
            self._idle_tag = command.tag
        if _enables_condstore(command):
            self.enabled.add("CONDSTORE")
        return command

    def _enable(self, command: c.Enable) -> c.Enable:
        """RFC 5161 3.1: turn on the known, offered ones; QRESYNC implies CONDSTORE (RFC 7162 3.2.3)."""
        offered = {cap.upper() for cap in self.options.enable_offered}
        fresh = [cap for cap in command.caps if cap in offered and cap not in self.enabled]
        self.enabled.update(fresh)
        if "QRESYNC" in self.enabled:
            self.enabled.add("CONDSTORE")
        return c.Enable(command.tag, command.caps, tuple(fresh))


def _enables_condstore(command: c.Command) -> bool:
    """RFC 7162 3.1: a "CONDSTORE enabling command" turns CONDSTORE on for the rest of the session."""
    if isinstance(command, c.Select):
        return command.condstore
    if isinstance(command, c.Status):
        return "HIGHESTMODSEQ" in command.items
    if isinstance(command, c.Fetch):
        return command.changedsince is not None or any(item.name == "MODSEQ" for item in command.items)
    if isinstance(command, c.Store):
        return command.unchangedsince is not None
    if isinstance(command, c.Search):
        return any(isinstance(node, ModSeqKey) for node in walk(command.key))
    return False
