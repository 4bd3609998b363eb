"""The sans-IO SMTP server connection: bytes in, events out, replies to bytes.

No asyncio, no sockets, no clock. The session feeds bytes with :meth:`receive_data`, takes events
from :meth:`next_event`, and answers each event with exactly one :meth:`send`, which applies the
state transition and returns the wire bytes. RFC 5321 3 and 4 define the sequence rules; RFC 2920
pipelining falls out of buffering: commands are taken one at a time from the buffer.

Message content goes to a sink the session supplies (``content_sink``, called once per message when
DATA's 354 is sent or at its first BDAT chunk); the sink may instead return a Reply, which refuses
the message (its content is still read, and dropped). Without one, content is kept in memory and
comes with :class:`MessageReceived` as ``chunks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from hardmail.core.address import Address
from hardmail.core.replies import (
    AUTH_ALREADY,
    AUTH_CANCELLED,
    AUTH_ENCRYPTION_REQUIRED,
    AUTH_IN_TRANSACTION,
    AUTH_MECH_UNKNOWN,
    AUTH_NOT_AVAILABLE,
    BAD_SEQUENCE,
    BARE_LINEFEED,
    HELP,
    LINE_TOO_LONG,
    MESSAGE_TOO_BIG,
    NEED_HELO,
    NEED_MAIL,
    NESTED_MAIL,
    NOOP_OK,
    OK,
    READY_TLS,
    RECIPIENT_OK,
    RESET_OK,
    SENDER_OK,
    SERVICE_CLOSING,
    START_DATA,
    SYNTAX_ERROR,
    TLS_ALREADY,
    TLS_NOT_AVAILABLE,
    TOO_MANY_COMMANDS,
    TOO_MANY_ERRORS,
    TOO_MANY_RECIPIENTS,
    UNKNOWN_COMMAND,
    VRFY_CANNOT,
    Reply,
    text_line_too_long,
)
from hardmail.proto.smtp import grammar
from hardmail.proto.smtp.data import BdatReader, ChunkList, ContentSink, DataReader
from hardmail.proto.smtp.events import (
    NEED_DATA,
    Auth,
    AuthResponse,
    BdatChunk,
    DataStart,
    Event,
    Helo,
    MailParams,
    MessageReceived,
    MessageRefused,
    NeedData,
    Noop,
    ProtocolError,
    Quit,
    Rcpt,
    Rset,
    StartTls,
    Vrfy,
)
from hardmail.proto.smtp.events import Help as HelpEvent
from hardmail.proto.smtp.events import Mail as MailEvent

MAX_AUTH_LINE = 12288  # RFC 4954 4: AUTH lines may be up to 12288 octets
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")


class Phase(Enum):
    COMMAND = "command"
    AUTH = "auth"  # waiting for a SASL response line
    DATA = "data"
    BDAT = "bdat"
    TLS_HANDSHAKE = "tls-handshake"  # 220 to STARTTLS sent; no input until start_tls()
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    hostname: str
    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    max_commands: int = 10_000
    max_bad_commands: int = 20
    max_line_length: int = 1000
    starttls_available: bool = True
    tls_active: bool = False  # implicit TLS (port 465)
    auth_mechanisms: tuple[str, ...] = ()  # offered inside TLS; empty: no AUTH on this listener
    auth_requires_tls: bool = True


@dataclass(slots=True)
class Transaction:
    sender: Address | None = None
    params: MailParams | None = None
    recipients: int = 0
    rejected_recipients: int = 0


SinkFactory = Callable[[], ContentSink | Reply]


class ServerConnection:
    """One SMTP server session's protocol state (RFC 5321 4.1.4 command order)."""

    def __init__(self, options: SmtpOptions, content_sink: SinkFactory | None = None) -> None:
        self.options = options
        self._content_sink = content_sink
        self.tls_active = options.tls_active
        self.phase = Phase.COMMAND
        self.helo: str | None = None
        self.esmtp = False
        self.authenticated = False
        self.transaction: Transaction | None = None
        self.commands = 0
        self.errors = 0
        self._buffer = bytearray()
        self._discarding_line = False
        self._awaiting: Event | None = None
        self._data: DataReader | None = None
        self._bdat: BdatReader | None = None

    # ----- input side -------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_event(self) -> Event | NeedData:
        if self._awaiting is not None:
            raise RuntimeError("send() a reply to the previous event first")
        if self.phase in (Phase.CLOSED, Phase.TLS_HANDSHAKE):
            return NEED_DATA
        event = self._read_event()
        if not isinstance(event, NeedData):
            self._awaiting = event
        return event

    def _read_event(self) -> Event | NeedData:
        if self.phase is Phase.DATA:
            return self._read_data()
        if self.phase is Phase.BDAT:
            return self._read_bdat()
        line = self._take_line()
        if line is None:
            return NEED_DATA
        if isinstance(line, Reply):
            if self.phase is Phase.AUTH:
                return AuthResponse(line, data="", cancelled=True)
            return self._error(line, "")
        if self.phase is Phase.AUTH:
            return self._auth_response(line)
        return self._command(line)

    def _take_line(self) -> str | Reply | None:
        """One CRLF-terminated line, a Reply for a bad line, or None when more bytes are needed."""
        limit = self._line_limit()
        newline = self._buffer.find(b"\n")
        if newline < 0:
            if len(self._buffer) > limit:  # RFC 5321 4.5.3.1.4: discard to the next line end
                self._buffer.clear()
                self._discarding_line = True
            return None
        raw = bytes(self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        if self._discarding_line or len(raw) > limit:
            self._discarding_line = False
            return LINE_TOO_LONG
        if not raw.endswith(b"\r\n") or b"\r" in raw[:-2]:  # RFC 5321 2.3.8
            return SYNTAX_ERROR.with_text("Command lines must end with CRLF (bare CR or LF seen)")
        try:
            return raw[:-2].decode("utf-8")
        except UnicodeDecodeError:
            return SYNTAX_ERROR.with_text("Command line is not valid UTF-8")

    def _line_limit(self) -> int:
        if self.phase is Phase.AUTH or self._buffer[:5].upper() == b"AUTH ":
            return MAX_AUTH_LINE
        return self.options.max_line_length

    # ----- commands ---------------------------------------------------------------------
    def _command(self, line: str) -> Event | NeedData:
        self.commands += 1
        if self.commands > self.options.max_commands:
            return ProtocolError(TOO_MANY_COMMANDS, command="", fatal=True)
        parsed = grammar.split_command(line)
        handler = _COMMANDS.get(parsed.verb)
        if handler is None:
            return self._error(UNKNOWN_COMMAND, "")  # never echo it: it may be a stray AUTH response
        try:
            return handler(self, parsed.argument)
        except grammar.GrammarError as exc:
            return self._error(exc.reply, parsed.verb)

    def _error(self, reply: Reply, command: str) -> Event:
        return ProtocolError(reply, command=command)

    def _cmd_helo(self, argument: str, extended: bool) -> Event:
        name = grammar.parse_helo(argument)
        reply = self._ehlo_reply(name) if extended else Reply(250, None, self.options.hostname)
        return Helo(reply, hostname=name, extended=extended)

    def _ehlo_reply(self, client: str) -> Reply:
        lines = [f"{self.options.hostname} greets {client}"]
        lines += ["PIPELINING", f"SIZE {self.options.max_message_size}", "8BITMIME", "SMTPUTF8",
                  "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if self.options.starttls_available and not self.tls_active:
            lines.append("STARTTLS")
        if self._auth_offered():
            lines.append("AUTH " + " ".join(self.options.auth_mechanisms))
        return Reply(250, None, tuple(lines))

    def _auth_offered(self) -> bool:
        """RFC 4954 4 with RFC 3207: AUTH is offered only inside TLS unless explicitly allowed."""
        if not self.options.auth_mechanisms or self.authenticated:
            return False
        return self.tls_active or not self.options.auth_requires_tls

    def _cmd_mail(self, argument: str) -> Event:
        if self.helo is None:
            return self._error(NEED_HELO, "MAIL")
        if self.transaction is not None:
            return self._error(NESTED_MAIL, "MAIL")
        sender, params = grammar.parse_mail(argument)
        if params.size is not None and params.size > self.options.max_message_size:  # RFC 1870 6
            return self._error(MESSAGE_TOO_BIG, "MAIL")
        return MailEvent(SENDER_OK, sender=sender, params=params)

    def _cmd_rcpt(self, argument: str) -> Event:
        if self.transaction is None:
            return self._error(NEED_MAIL, "RCPT")
        if self.transaction.recipients >= self.options.max_recipients:  # RFC 5321 4.5.3.1.10
            return ProtocolError(TOO_MANY_RECIPIENTS, command="RCPT")
        utf8 = bool(self.transaction.params and self.transaction.params.smtputf8)
        recipient, params, postmaster = grammar.parse_rcpt(argument, utf8)
        return Rcpt(RECIPIENT_OK, recipient=recipient, params=params, bare_postmaster=postmaster)

    def _cmd_data(self, argument: str) -> Event:
        if argument.strip():
            return self._error(SYNTAX_ERROR.with_text("DATA takes no argument"), "DATA")
        problem = self._message_sequence_problem()
        if problem is None and self._bdat is not None:  # RFC 3030 2: no DATA after BDAT
            problem = BAD_SEQUENCE.with_text("DATA not allowed after BDAT in one transaction")
        if problem is not None:
            return self._error(problem, "DATA")
        return DataStart(START_DATA)

    def _message_sequence_problem(self) -> Reply | None:
        if self.transaction is None:
            return NEED_MAIL
        if self.transaction.recipients == 0:  # RFC 2920 3.1: all RCPTs failed
            return NO_VALID_RECIPIENTS
        return None

    def _cmd_bdat(self, argument: str) -> Event | NeedData:
        size, last = grammar.parse_bdat(argument)
        if self._bdat is None:
            problem = self._message_sequence_problem()  # no transaction: read the chunk, keep nothing
            sink = (ChunkList(), problem) if problem is not None else self._new_sink()
            self._bdat = BdatReader(self.options.max_message_size, *sink,
                                    max_line_length=self.options.max_line_length)
        self._bdat.start_chunk(size, last)
        self.phase = Phase.BDAT
        return self._read_bdat()

    def _cmd_rset(self, argument: str) -> Event:
        return Rset(RESET_OK)

    def _cmd_noop(self, argument: str) -> Event:
        return Noop(NOOP_OK)

    def _cmd_quit(self, argument: str) -> Event:
        return Quit(SERVICE_CLOSING)

    def _cmd_help(self, argument: str) -> Event:
        return HelpEvent(HELP)

    def _cmd_vrfy(self, argument: str) -> Event:
        # RFC 5321 3.5.3: 252 avoids confirming or denying that a user exists.
        return Vrfy(VRFY_CANNOT, argument=argument[:256])

    def _cmd_expn(self, argument: str) -> Event:
        return self._error(Reply(502, "5.5.1", "EXPN not available"), "EXPN")

    def _cmd_starttls(self, argument: str) -> Event:
        if argument.strip():
            return self._error(SYNTAX_ERROR.with_text("STARTTLS takes no argument"), "STARTTLS")
        if self.tls_active:
            return self._error(TLS_ALREADY, "STARTTLS")
        if not self.options.starttls_available:
            return self._error(TLS_NOT_AVAILABLE, "STARTTLS")
        if not self.esmtp:
            return self._error(NEED_HELO.with_text("Send EHLO first"), "STARTTLS")
        return StartTls(READY_TLS)

    def _cmd_auth(self, argument: str) -> Event:
        mechanism, initial = grammar.parse_auth(argument)
        problem = self._auth_problem(mechanism)
        if problem is not None:
            return self._error(problem, "AUTH")
        return Auth(Reply(334, None, ""), mechanism=mechanism, initial_response=initial)

    def _auth_problem(self, mechanism: str) -> Reply | None:
        if not self.esmtp:
            return NEED_HELO.with_text("Send EHLO first")
        # RFC 4954 6: refuse anything sent in the clear first, whatever the listener offers, so that
        # no client is ever told that plaintext AUTH could work here.
        if not self.tls_active and self.options.auth_requires_tls:
            return AUTH_ENCRYPTION_REQUIRED
        if not self.options.auth_mechanisms:
            return AUTH_NOT_AVAILABLE
        if self.authenticated:
            return AUTH_ALREADY
        if self.transaction is not None:
            return AUTH_IN_TRANSACTION
        if mechanism not in (offered.upper() for offered in self.options.auth_mechanisms):
            return AUTH_MECH_UNKNOWN
        return None

    def _auth_response(self, line: str) -> Event:
        if line.strip() == "*":  # RFC 4954 4: the client cancels the exchange
            return AuthResponse(AUTH_CANCELLED, data="*", cancelled=True)
        return AuthResponse(Reply(334, None, ""), data=line.strip())

    # ----- message content --------------------------------------------------------------
    def _new_sink(self) -> tuple[ContentSink, Reply | None]:
        """The sink for the next message, or an in-memory one and the refusal the factory gave."""
        made = self._content_sink() if self._content_sink is not None else ChunkList()
        return (ChunkList(), made) if isinstance(made, Reply) else (made, None)

    @property
    def content_in_progress(self) -> bool:
        """True while a message's content is being read (DATA, or BDAT chunks before LAST)."""
        return self._data is not None or self._bdat is not None

    def _read_data(self) -> Event | NeedData:
        reader = self._data
        assert reader is not None
        if not self._buffer:
            return NEED_DATA
        rest = reader.feed(bytes(self._buffer))
        self._buffer = bytearray(rest)
        if not reader.done:
            return NEED_DATA
        self._data = None
        self.phase = Phase.COMMAND
        if reader.bare_newline:
            return MessageRefused(BARE_LINEFEED, reason="bare CR or LF in DATA")
        if reader.lines.too_long:
            return MessageRefused(text_line_too_long(reader.lines.limit), reason="text line too long")
        if reader.too_big:
            return MessageRefused(MESSAGE_TOO_BIG, reason="message larger than the limit")
        if reader.refused:
            return MessageRefused(reader.refused, reason="refused before its content was read")
        return MessageReceived(OK, chunks=_kept(reader.sink), size=reader.size)

    def _read_bdat(self) -> Event | NeedData:
        reader = self._bdat
        assert reader is not None
        if reader.remaining and self._buffer:
            self._buffer = bytearray(reader.feed(bytes(self._buffer)))
        if not reader.chunk_done:
            return NEED_DATA
        self.phase = Phase.COMMAND
        return self._bdat_outcome(reader)

    def _bdat_outcome(self, reader: BdatReader) -> Event:
        # RFC 3030 2: the chunk is consumed whatever the verdict.
        problem = self._message_sequence_problem()
        if reader.last:
            reader.finish_message()
        if problem is None:
            problem = _bdat_problem(reader)
        if problem is not None:
            self._bdat = None
            return MessageRefused(problem, reason="BDAT refused")
        if not reader.last:
            return BdatChunk(Reply(250, "2.0.0", f"{reader.size} octets received"), size=reader.size)
        self._bdat = None
        return MessageReceived(OK, chunks=_kept(reader.sink), size=reader.size, via_bdat=True)

    # ----- output side ------------------------------------------------------------------
    def greeting(self, reply: Reply | None = None) -> bytes:
        """The opening reply (RFC 5321 4.3.1); a 4xx/5xx greeting closes the session."""
        reply = reply or Reply(220, None, f"{self.options.hostname} ESMTP hardmail")
        if not reply.is_positive:
            self.phase = Phase.CLOSED
        return reply.to_bytes(enhanced_codes=not reply.is_positive)

    def send(self, reply: Reply) -> bytes:
        """Answer the event last returned by :meth:`next_event`; returns the wire bytes."""
        event, self._awaiting = self._awaiting, None
        if event is None:
            raise RuntimeError("send() without an event to answer")
        if reply.is_permanent or (reply.code == 454 and isinstance(event, (Auth, AuthResponse))):
            self.errors += 1  # a saturated AUTH counts too: it must not be retried without end
        self._transition(event, reply)
        if reply.code == 421 or (isinstance(event, ProtocolError) and event.fatal):
            self.phase = Phase.CLOSED
        elif self.errors >= self.options.max_bad_commands and reply.is_permanent:
            self.phase = Phase.CLOSED
            return reply.to_bytes() + TOO_MANY_ERRORS.to_bytes()
        return reply.to_bytes()

    def _transition(self, event: Event, reply: Reply) -> None:
        handler = _TRANSITIONS.get(type(event))
        if handler is not None:
            handler(self, event, reply)

    def _after_helo(self, event: Event, reply: Reply) -> None:
        assert isinstance(event, Helo)
        if reply.is_positive:  # RFC 5321 4.1.4: EHLO resets the transaction
            self.helo, self.esmtp, self.transaction = event.hostname, event.extended, None
            self._bdat = None

    def _after_mail(self, event: Event, reply: Reply) -> None:
        assert isinstance(event, MailEvent)
        if reply.is_positive:
            self.transaction = Transaction(sender=event.sender, params=event.params)

    def _after_rcpt(self, event: Event, reply: Reply) -> None:
        if self.transaction is None:
            return
        if reply.is_positive:
            self.transaction.recipients += 1
        else:
            self.transaction.rejected_recipients += 1

    def _after_data_start(self, event: Event, reply: Reply) -> None:
        if reply.code == 354:
            self._data = DataReader(self.options.max_message_size, *self._new_sink(),
                                    max_line_length=self.options.max_line_length)
            self.phase = Phase.DATA

    def _after_message(self, event: Event, reply: Reply) -> None:
        self.transaction = None
        self._bdat = None

    def _after_bdat_chunk(self, event: Event, reply: Reply) -> None:
        if not reply.is_positive:
            self.transaction = None
            self._bdat = None

    def _after_rset(self, event: Event, reply: Reply) -> None:
        self.transaction = None
        self._bdat = None

    def _after_quit(self, event: Event, reply: Reply) -> None:
        self.phase = Phase.CLOSED

    def _after_auth(self, event: Event, reply: Reply) -> None:
        if reply.code == 334:
            self.phase = Phase.AUTH
            return
        self.phase = Phase.COMMAND
        if reply.code == 235:
            self.authenticated = True

    def _after_starttls(self, event: Event, reply: Reply) -> None:
        if reply.code == 220:
            # RFC 3207 4.2 / CVE-2011-0411: nothing pipelined after STARTTLS may survive the handshake.
            self._buffer.clear()
            self._discarding_line = False
            self.phase = Phase.TLS_HANDSHAKE

    def start_tls(self) -> None:
        """The TLS handshake finished: forget everything (RFC 3207 4.2), including buffered input
        and any authentication made in the clear."""
        self._buffer.clear()
        self._discarding_line = False
        self.tls_active = True
        self.phase = Phase.COMMAND
        self.helo, self.esmtp, self.transaction, self._bdat = None, False, None, None
        self.authenticated = False

    def close(self) -> None:
        self.phase = Phase.CLOSED

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED and self._awaiting is None

    @property
    def awaiting_tls(self) -> bool:
        return self.phase is Phase.TLS_HANDSHAKE


def _bdat_problem(reader: BdatReader) -> Reply | None:
    """Why the BDAT message is refused, or None."""
    if reader.bare_newline:
        return BARE_LINEFEED
    if reader.lines.too_long:
        return text_line_too_long(reader.lines.limit)
    if reader.refused:
        return reader.refused
    return MESSAGE_TOO_BIG if reader.too_big else None


def _kept(sink: ContentSink) -> tuple[bytes, ...]:
    """The content when it was kept in memory; empty when the session's sink took it."""
    return tuple(sink.chunks) if isinstance(sink, ChunkList) else ()


_COMMANDS: dict[str, Callable[[ServerConnection, str], Event | NeedData]] = {
    "HELO": lambda c, a: c._cmd_helo(a, extended=False),
    "EHLO": lambda c, a: c._cmd_helo(a, extended=True),
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "BDAT": ServerConnection._cmd_bdat,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "QUIT": ServerConnection._cmd_quit,
    "HELP": ServerConnection._cmd_help,
    "VRFY": ServerConnection._cmd_vrfy,
    "EXPN": ServerConnection._cmd_expn,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}

_TRANSITIONS: dict[type[Event], Callable[[ServerConnection, Event, Reply], None]] = {
    Helo: ServerConnection._after_helo,
    MailEvent: ServerConnection._after_mail,
    Rcpt: ServerConnection._after_rcpt,
    DataStart: ServerConnection._after_data_start,
    MessageReceived: ServerConnection._after_message,
    MessageRefused: ServerConnection._after_message,
    BdatChunk: ServerConnection._after_bdat_chunk,
    Rset: ServerConnection._after_rset,
    Quit: ServerConnection._after_quit,
    Auth: ServerConnection._after_auth,
    AuthResponse: ServerConnection._after_auth,
    StartTls: ServerConnection._after_starttls,
}
