"""Events the sans-IO SMTP server core emits, one per client command or completed message.

Each event carries ``reply``: the reply the core proposes. For events that need no outside decision
(NOOP, HELP, protocol errors, ...) the session sends it as is; for events that need policy (MAIL,
RCPT, AUTH, a completed message) the session decides and may send another reply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hardmail.core.address import Address
from hardmail.core.replies import Reply


class NeedData:
    """Sentinel: the core needs more bytes before it can emit another event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class MailParams:
    """ESMTP parameters of MAIL FROM, parsed and kept."""

    size: int | None = None  # RFC 1870
    body: str | None = None  # RFC 6152: 7BIT or 8BITMIME
    smtputf8: bool = False  # RFC 6531 3.4
    ret: str | None = None  # RFC 3461 4.3: FULL or HDRS
    envid: str | None = None  # RFC 3461 4.4, decoded from xtext
    auth: str | None = None  # RFC 4954 5, decoded from xtext


@dataclass(frozen=True, slots=True)
class RcptParams:
    """ESMTP parameters of RCPT TO (RFC 3461 4.1, 4.2)."""

    notify: tuple[str, ...] = ()
    orcpt: str | None = None  # "addr-type;address", decoded from xtext


@dataclass(frozen=True, slots=True)
class Event:
    reply: Reply


@dataclass(frozen=True, slots=True)
class Helo(Event):
    hostname: str
    extended: bool


@dataclass(frozen=True, slots=True)
class StartTls(Event):
    pass


@dataclass(frozen=True, slots=True)
class Auth(Event):
    mechanism: str
    initial_response: str | None = field(repr=False)  # still base64; "=" means empty


@dataclass(frozen=True, slots=True)
class AuthResponse(Event):
    data: str = field(repr=False)  # base64 line from the client
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Mail(Event):
    sender: Address | None  # None is the null reverse-path <>
    params: MailParams


@dataclass(frozen=True, slots=True)
class Rcpt(Event):
    recipient: Address
    params: RcptParams
    bare_postmaster: bool = False  # RFC 5321 4.1.1.3: "RCPT TO:<Postmaster>" without domain


@dataclass(frozen=True, slots=True)
class DataStart(Event):
    """DATA was accepted by the core; the proposed reply is 354."""


@dataclass(frozen=True, slots=True)
class BdatChunk(Event):
    """A non-final BDAT chunk was received in full (RFC 3030 2)."""

    size: int


@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    """A whole message is in: dot-unstuffed DATA content or the joined BDAT chunks.

    ``chunks`` holds the content only when the connection kept it in memory (no content sink);
    with a sink, the sink has it and ``chunks`` is empty."""

    chunks: tuple[bytes, ...] = field(repr=False)
    size: int = 0
    via_bdat: bool = False


@dataclass(frozen=True, slots=True)
class MessageRefused(Event):
    """The message was read to its end but refused by the core (too big, bare CR/LF, ...)."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rset(Event):
    pass


@dataclass(frozen=True, slots=True)
class Noop(Event):
    pass


@dataclass(frozen=True, slots=True)
class Quit(Event):
    pass


@dataclass(frozen=True, slots=True)
class Help(Event):
    pass


@dataclass(frozen=True, slots=True)
class Vrfy(Event):
    argument: str


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """A command the core refused by itself (syntax, sequence, limits). ``fatal`` closes the session."""

    command: str = ""
    fatal: bool = False


SmtpEvent = (
    Helo | StartTls | Auth | AuthResponse | Mail | Rcpt | DataStart | BdatChunk | MessageReceived
    | MessageRefused | Rset | Noop | Quit | Help | Vrfy | ProtocolError
)
