"""Events the sans-IO POP3 core emits, one per client line.

Each carries ``reply``, the response the core proposes. :class:`Answered` events (CAPA, STAT,
LIST, UIDL, DELE, RSET, NOOP, errors) need no outside decision: the session sends the reply as it
is. The others need the session: a login (USER/PASS, AUTH and its responses), STLS, RETR/TOP
(the session streams the message after the status line) and QUIT (the UPDATE state).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hardmail.proto.pop3.replies import Pop3Reply


class NeedData:
    """Sentinel: the core needs more bytes before it can emit another event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class Event:
    reply: Pop3Reply


@dataclass(frozen=True, slots=True)
class Answered(Event):
    """The core's reply is the whole answer."""

    command: str = ""


@dataclass(frozen=True, slots=True)
class ProtocolError(Answered):
    """A line the core refused (syntax, state, limits); ``fatal`` closes the session."""

    fatal: bool = False


@dataclass(frozen=True, slots=True)
class User(Event):
    name: str


@dataclass(frozen=True, slots=True)
class Pass(Event):
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Auth(Event):
    mechanism: str
    initial_response: str | None = field(repr=False)  # still base64; "=" is an empty response


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    data: str = field(repr=False)  # base64 line
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Stls(Event):
    pass


@dataclass(frozen=True, slots=True)
class Retr(Event):
    number: int
    uid: int
    size: int


@dataclass(frozen=True, slots=True)
class Top(Event):
    number: int
    uid: int
    lines: int


@dataclass(frozen=True, slots=True)
class Quit(Event):
    """In the TRANSACTION state: ``deleted`` are the UIDs to remove before the +OK (RFC 1939 6)."""

    deleted: tuple[int, ...] = ()
    update: bool = False


Pop3Event = Answered | ProtocolError | User | Pass | Auth | AuthResponse | Stls | Retr | Top | Quit
