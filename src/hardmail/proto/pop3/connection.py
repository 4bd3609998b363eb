"""The sans-IO POP3 server connection: bytes in, events out, responses to bytes.

No asyncio, no sockets, no clock. The session feeds bytes with :meth:`receive_data`, takes events
from :meth:`next_event` and answers each with exactly one :meth:`send`, which applies the state
transition and returns the wire bytes. States are RFC 1939 3: AUTHORIZATION, TRANSACTION (once
a login succeeded and the session set :attr:`maildrop`) and UPDATE (after QUIT). Pipelined
commands (RFC 2449 6.6) are taken from the buffer one at a time, in order; the session reads
more only when the buffer holds no whole line, so the buffer is bounded by the line limit.

Lines end with CRLF; a bare LF is taken as a line end too (as Dovecot does: POP3 has no
message data in the client's direction that could be smuggled). RFC 2449 4 limits a command line
to 255 octets; real clients send longer user names and passwords, so the limit is
``Pop3Options.max_line`` (8192 by default) and 12288 for AUTH lines (as SMTP, RFC 4954 4); a
longer line is discarded to its end and answered with -ERR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from hardmail.proto.pop3 import replies as r
from hardmail.proto.pop3.events import (
    NEED_DATA,
    Answered,
    Auth,
    AuthResponse,
    Event,
    NeedData,
    Pass,
    ProtocolError,
    Quit,
    Retr,
    Stls,
    Top,
    User,
)
from hardmail.proto.pop3.maildrop import Maildrop
from hardmail.proto.pop3.replies import Pop3Reply

MAX_AUTH_LINE = 12288


class State(Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


class Phase(Enum):
    COMMAND = "command"
    AUTH = "auth"  # waiting for a SASL response line (RFC 5034 4)
    TLS_HANDSHAKE = "tls-handshake"  # +OK to STLS sent; no input until start_tls()
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Pop3Options:
    max_line: int = 8192
    max_bad_commands: int = 20
    max_login_failures: int = 3  # as Dovecot's login processes
    stls_available: bool = True
    tls_active: bool = False  # implicit TLS (port 995)
    allow_plaintext_login: bool = False
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256")
    implementation: str = "hardmail"


class Pop3ServerConnection:
    """One POP3 server session's protocol state."""

    def __init__(self, options: Pop3Options) -> None:
        self.options = options
        self.tls_active = options.tls_active
        self.state = State.AUTHORIZATION
        self.phase = Phase.COMMAND
        self.user: str | None = None  # the name of the last accepted USER
        self.maildrop: Maildrop | None = None  # set by the session before the +OK of a login
        self.commands = 0
        self.errors = 0
        self.login_failures = 0
        self._buffer = bytearray()
        self._discarding = False
        self._awaiting: Event | None = None

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

    @property
    def has_buffered_line(self) -> bool:
        return b"\n" in self._buffer

    def _read_event(self) -> Event | NeedData:
        line = self._take_line()
        if line is None:
            return NEED_DATA
        if isinstance(line, Pop3Reply):
            if self.phase is Phase.AUTH:
                return AuthResponse(r.AUTH_ABORTED, data="", cancelled=True)
            return ProtocolError(line)
        self.commands += 1
        if self.phase is Phase.AUTH:
            cancelled = line.strip() == "*"  # RFC 5034 4
            return AuthResponse(r.AUTH_ABORTED if cancelled else r.continuation(""), data=line.strip(),
                                cancelled=cancelled)
        return self._command(line)

    def _take_line(self) -> str | Pop3Reply | None:
        limit = self._line_limit()
        newline = self._buffer.find(b"\n")
        if newline < 0:
            if len(self._buffer) > limit:
                self._buffer.clear()
                self._discarding = True
            return None
        raw = bytes(self._buffer[: newline + 1])
        del self._buffer[: newline + 1]
        if self._discarding or len(raw) > limit:
            self._discarding = False
            return r.LINE_TOO_LONG
        text = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            return r.err("Command line is not valid UTF-8.")

    def _line_limit(self) -> int:
        if self.phase is Phase.AUTH or self._buffer[:5].upper() == b"AUTH ":
            return max(MAX_AUTH_LINE, self.options.max_line)
        return self.options.max_line

    # ----- commands ---------------------------------------------------------------------
    def _command(self, line: str) -> Event:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        table = _AUTHORIZATION if self.state is State.AUTHORIZATION else _TRANSACTION
        handler = table.get(verb)
        if handler is None:
            if verb in _AUTHORIZATION or verb in _TRANSACTION:
                text = "Not logged in." if self.state is State.AUTHORIZATION else "Already logged in."
                return ProtocolError(r.err(text), command=verb)
            return ProtocolError(r.err("Unknown command."), command=verb[:16])  # never echoed back
        return handler(self, argument)

    def _no_argument(self, verb: str, argument: str, event: Callable[[], Event]) -> Event:
        if argument.strip():
            return ProtocolError(r.err(f"{verb} takes no argument."), command=verb)
        return event()

    def _cmd_capa(self, argument: str) -> Event:
        return Answered(r.ok("Capability list follows", self.capabilities()), command="CAPA")

    def capabilities(self) -> tuple[str, ...]:
        """RFC 2449 5 and 6: what this state offers; USER and SASL only where a login may go."""
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            if self.login_allowed:
                caps.insert(1, "USER")
                if self.options.sasl_mechanisms:
                    caps.append("SASL " + " ".join(self.options.sasl_mechanisms))
            if self.options.stls_available and not self.tls_active:
                caps.append("STLS")  # RFC 2595 4
        caps += ["EXPIRE NEVER", f"IMPLEMENTATION {self.options.implementation}"]  # RFC 2449 6.7, 6.9
        return tuple(caps)

    @property
    def login_allowed(self) -> bool:
        """RFC 2595 and the issue's rule: logins only inside TLS unless the admin allows them."""
        return self.tls_active or self.options.allow_plaintext_login

    def _login_problem(self, verb: str) -> Event | None:
        if not self.login_allowed:
            return ProtocolError(r.PLAINTEXT_REFUSED, command=verb)
        return None

    def _cmd_user(self, argument: str) -> Event:
        problem = self._login_problem("USER")
        if problem is not None:
            return problem
        if not argument.strip():
            return ProtocolError(r.err("USER needs a user name."), command="USER")
        return User(r.USER_OK, name=argument.strip())

    def _cmd_pass(self, argument: str) -> Event:
        problem = self._login_problem("PASS")
        if problem is not None:
            return problem
        if self.user is None:
            return ProtocolError(r.err("No user name given: send USER first."), command="PASS")
        if not argument:
            return ProtocolError(r.err("PASS needs a password."), command="PASS")
        return Pass(r.LOGGED_IN, user=self.user, password=argument)  # RFC 1939 7: spaces allowed

    def _cmd_auth(self, argument: str) -> Event:
        problem = self._login_problem("AUTH")
        if problem is not None:
            return problem
        words = argument.split()
        if not words:  # the mechanism list some clients ask for (Dovecot answers it too)
            return Answered(r.ok("", self.options.sasl_mechanisms), command="AUTH")
        if len(words) > 2:
            return ProtocolError(r.err("AUTH takes a mechanism and an initial response."), command="AUTH")
        mechanism = words[0].upper()
        if mechanism not in self.options.sasl_mechanisms:
            return ProtocolError(r.err("Unsupported authentication mechanism."), command="AUTH")
        initial = words[1] if len(words) == 2 else None  # RFC 5034 4: "=" is an empty response
        return Auth(r.continuation(""), mechanism=mechanism, initial_response=initial)

    def _cmd_stls(self, argument: str) -> Event:
        if self.tls_active:
            return ProtocolError(r.err("TLS is already active."), command="STLS")
        if not self.options.stls_available:
            return ProtocolError(r.TLS_UNAVAILABLE, command="STLS")
        return self._no_argument("STLS", argument, lambda: Stls(r.BEGIN_TLS))

    def _cmd_quit(self, argument: str) -> Event:
        if self.state is State.TRANSACTION:
            assert self.maildrop is not None
            deleted = self.maildrop.deleted_uids()
            return Quit(r.ok("Logging out, messages deleted." if deleted else "Logging out."),
                        deleted=deleted, update=True)
        return Quit(r.BYE)

    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _cmd_stat(self, argument: str) -> Event:
        return self._no_argument("STAT", argument, lambda: Answered(self._drop().stat(), command="STAT"))

    def _cmd_list(self, argument: str) -> Event:
        return self._listing("LIST", argument, self._drop().scan_listing)

    def _cmd_uidl(self, argument: str) -> Event:
        return self._listing("UIDL", argument, self._drop().uid_listing)

    def _listing(self, verb: str, argument: str, make: Callable[[str | None], Pop3Reply]) -> Event:
        words = argument.split()
        if len(words) > 1:
            return ProtocolError(r.err(f"{verb} takes at most one message number."), command=verb)
        return Answered(make(words[0] if words else None), command=verb)

    def _cmd_retr(self, argument: str) -> Event:
        found = self._drop().message(argument.strip())
        if isinstance(found, Pop3Reply):
            return Answered(found, command="RETR")
        return Retr(r.ok(f"{found.size} octets"), number=int(argument), uid=found.uid, size=found.size)

    def _cmd_top(self, argument: str) -> Event:
        words = argument.split()
        if len(words) != 2:
            return ProtocolError(r.err("TOP needs a message number and a number of lines."), command="TOP")
        found = self._drop().message(words[0])
        if isinstance(found, Pop3Reply):
            return Answered(found, command="TOP")
        if not words[1].isdigit() or not words[1].isascii():
            return ProtocolError(r.err(f"Invalid number of lines: {words[1][:20]}"), command="TOP")
        return Top(r.ok(""), number=int(words[0]), uid=found.uid, lines=min(int(words[1]), 2**31))

    def _cmd_dele(self, argument: str) -> Event:
        return Answered(self._drop().mark(argument.strip()), command="DELE")

    def _cmd_rset(self, argument: str) -> Event:
        return self._no_argument("RSET", argument, lambda: Answered(self._drop().reset(), command="RSET"))

    def _cmd_noop(self, argument: str) -> Event:
        return self._no_argument("NOOP", argument, lambda: Answered(r.ok(""), command="NOOP"))

    # ----- output side ------------------------------------------------------------------
    def greeting(self, reply: Pop3Reply | None = None) -> bytes:
        """The opening response (RFC 1939 4); an -ERR closes the session."""
        reply = reply or r.GREETING
        if not reply.ok:
            self.phase = Phase.CLOSED
        return reply.to_bytes()

    def send(self, reply: Pop3Reply) -> bytes:
        """Answer the event last returned by :meth:`next_event`; returns the wire bytes."""
        event, self._awaiting = self._awaiting, None
        if event is None:
            raise RuntimeError("send() without an event to answer")
        self._transition(event, reply)
        wire = reply.to_bytes()
        if isinstance(event, ProtocolError) and reply.is_error:
            self.errors += 1
            if event.fatal or self.errors >= self.options.max_bad_commands:
                self.phase = Phase.CLOSED
                return wire + (b"" if event.fatal else r.TOO_MANY_ERRORS.to_bytes())
        if self.login_failures >= self.options.max_login_failures and self.state is State.AUTHORIZATION:
            self.phase = Phase.CLOSED
        return wire

    def _transition(self, event: Event, reply: Pop3Reply) -> None:
        if isinstance(event, User):
            self.user = event.name if reply.ok else None
        elif isinstance(event, (Pass, Auth, AuthResponse)):
            self._after_login_step(event, reply)
        elif isinstance(event, Stls) and reply.ok:
            self._buffer.clear()  # RFC 2595 4 / CVE-2011-0411: nothing pipelined survives
            self._discarding = False
            self.phase = Phase.TLS_HANDSHAKE
        elif isinstance(event, Quit):
            self.state = State.UPDATE if event.update else self.state
            self.phase = Phase.CLOSED

    def _after_login_step(self, event: Event, reply: Pop3Reply) -> None:
        if reply.is_continuation:
            self.phase = Phase.AUTH
            return
        self.phase = Phase.COMMAND
        if isinstance(event, Pass):
            self.user = None  # RFC 1939 7: a failed PASS needs a new USER
        if reply.ok:
            if self.maildrop is None:
                raise RuntimeError("set the maildrop before the +OK of a login")
            self.state = State.TRANSACTION
        elif reply.code in ("AUTH", "SYS/TEMP") or isinstance(event, Pass):
            self.login_failures += 1

    def start_tls(self) -> None:
        """The TLS handshake finished: forget what was buffered and learnt in the clear."""
        self._buffer.clear()
        self._discarding = False
        self.tls_active = True
        self.phase = Phase.COMMAND
        self.user = None

    def close(self) -> None:
        self.phase = Phase.CLOSED

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED and self._awaiting is None

    @property
    def awaiting_tls(self) -> bool:
        return self.phase is Phase.TLS_HANDSHAKE


_Handler = Callable[[Pop3ServerConnection, str], Event]

_AUTHORIZATION: dict[str, _Handler] = {  # RFC 1939 4, RFC 2449 5, RFC 2595 4, RFC 5034 4
    "CAPA": Pop3ServerConnection._cmd_capa,
    "USER": Pop3ServerConnection._cmd_user,
    "PASS": Pop3ServerConnection._cmd_pass,
    "AUTH": Pop3ServerConnection._cmd_auth,
    "STLS": Pop3ServerConnection._cmd_stls,
    "QUIT": Pop3ServerConnection._cmd_quit,
}

_TRANSACTION: dict[str, _Handler] = {  # RFC 1939 5 and 7
    "CAPA": Pop3ServerConnection._cmd_capa,
    "STAT": Pop3ServerConnection._cmd_stat,
    "LIST": Pop3ServerConnection._cmd_list,
    "UIDL": Pop3ServerConnection._cmd_uidl,
    "RETR": Pop3ServerConnection._cmd_retr,
    "TOP": Pop3ServerConnection._cmd_top,
    "DELE": Pop3ServerConnection._cmd_dele,
    "RSET": Pop3ServerConnection._cmd_rset,
    "NOOP": Pop3ServerConnection._cmd_noop,
    "QUIT": Pop3ServerConnection._cmd_quit,
}
