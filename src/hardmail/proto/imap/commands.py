"""Events of the sans-IO IMAP server core: one frozen dataclass per client command with its parsed
arguments (RFC 9051 6, with the extensions listed in ``docs/imap.md``), plus the non-command events
(need data, continuation, bad input, limits, SASL and IDLE lines).

Strings are decoded: mailbox names are UTF-8 (modified UTF-7 decoded unless UTF8=ACCEPT or
IMAP4rev2 is enabled, RFC 9051 5.1), INBOX in any case is given as ``"INBOX"``. Flags keep the
client's spelling except system flags, which are normalised (``\\SEEN`` → ``\\Seen``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from hardmail.proto.imap.searchkeys import SearchKey
from hardmail.proto.imap.sequence import SequenceSet

# ----- non-command events ---------------------------------------------------------------------


class NeedData:
    """Sentinel: the core needs more bytes before it can emit another event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of everything :meth:`ImapServerConnection.next_event` returns except NEED_DATA."""


@dataclass(frozen=True, slots=True)
class ContinuationNeeded(Event):
    """A synchronizing literal ``{n}`` was announced: write ``continuation(text)`` (``+ text``), or
    refuse it with ``refuse_literal()`` and a tagged NO (e.g. APPEND to a missing mailbox: ``NO
    [TRYCREATE]``, over quota: ``NO [OVERQUOTA]``; the client then sends no data). For APPEND's
    message literal, ``append_mailbox`` is the target (decoded), else None."""

    text: str = "Ready for literal data"
    tag: str = field(default="*", compare=False)
    verb: str = field(default="", compare=False)  # upper-cased command name ("UID" for UID commands)
    size: int = field(default=0, compare=False)
    append_mailbox: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class BadCommand(Event):
    """Malformed or refused input. Answer ``tagged(tag, status, text, code)``; ``tag`` is ``"*"``
    when no valid tag could be read (then answer untagged ``* BAD``)."""

    tag: str
    text: str
    status: Literal["BAD", "NO"] = "BAD"
    code: str | None = None
    fatal: bool = False  # the session should close after answering (e.g. too many errors)


@dataclass(frozen=True, slots=True)
class LiteralTooLarge(Event):
    """A literal over the limit (RFC 7888 4, RFC 7889): for a synchronizing one, refused before the
    ``+``; for a non-synchronizing one, its data was skipped. Answer ``tagged(tag, status, text,
    code)``."""

    tag: str
    size: int
    limit: int
    synchronizing: bool
    status: Literal["BAD", "NO"] = "BAD"
    text: str = "Literal too large"
    code: str | None = "TOOBIG"


@dataclass(frozen=True, slots=True)
class LineTooLong(Event):
    """A command line over ``max_line``; the rest of it was skipped."""

    tag: str = "*"
    text: str = "Command line too long"
    status: Literal["BAD"] = "BAD"
    code: str | None = "TOOBIG"


@dataclass(frozen=True, slots=True)
class SaslResponse(Event):
    """One client line during AUTHENTICATE (still base64; ``*`` cancels, RFC 9051 6.2.2)."""

    line: bytes = field(repr=False)

    @property
    def cancelled(self) -> bool:
        return self.line.strip() == b"*"


@dataclass(frozen=True, slots=True)
class IdleDone(Event):
    """``DONE`` ended IDLE (RFC 2177 3); answer ``tagged(tag, "OK", ...)``."""

    tag: str


# ----- command arguments ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """RFC 7162 3.2.5.1: SELECT (QRESYNC (uidvalidity modseq [known-uids [(seq-match)]]))."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_seqs: SequenceSet | None = None  # seq-match: message numbers ...
    known_seq_uids: SequenceSet | None = None  # ... and their UIDs


@dataclass(frozen=True, slots=True)
class Section:
    """A BODY[...] / BINARY[...] section (RFC 9051 6.4.5): ``part`` numbers then ``text``
    (``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME`` or None)."""

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()  # upper-cased header names for HEADER.FIELDS (.NOT)

    def __str__(self) -> str:
        pieces = [".".join(map(str, self.part))] if self.part else []
        if self.text:
            text = self.text
            if self.fields:
                text += " (" + " ".join(self.fields) + ")"
            pieces.append(text)
        return ".".join(pieces)


FetchName = Literal[
    "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ",
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]", "BINARY[]", "BINARY.SIZE[]",
]


@dataclass(frozen=True, slots=True)
class FetchItem:
    """One fetch attribute. ``name`` is one of :data:`FetchName`; for ``BODY[]`` (any section),
    ``BINARY[]`` and ``BINARY.SIZE[]`` the ``section`` and ``partial`` (origin, length) apply."""

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    def response_name(self) -> str:
        """The item's name in the FETCH response (RFC 9051 7.5.2): ``BODY[1.TEXT]<0>``; PEEK dropped."""
        if self.section is None:
            return self.name
        base = self.name[:-2]
        origin = f"<{self.partial[0]}>" if self.partial and base != "BINARY.SIZE" else ""
        return f"{base}[{self.section}]{origin}"

    @property
    def sets_seen(self) -> bool:
        """RFC 9051 6.4.5: BODY[...] and BINARY[...] without .PEEK, RFC822 and RFC822.TEXT set \\Seen."""
        return (self.name in ("BODY[]", "BINARY[]") and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """RFC 5256 3 sort-key with its REVERSE flag (ARRIVAL CC DATE FROM SIZE SUBJECT TO, RFC 5957
    DISPLAYFROM DISPLAYTO)."""

    key: str
    reverse: bool = False


StatusItem = Literal["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                     "HIGHESTMODSEQ", "APPENDLIMIT"]

# ----- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command(Event):
    tag: str


@dataclass(frozen=True, slots=True)
class Capability(Command):
    pass


@dataclass(frozen=True, slots=True)
class Noop(Command):
    pass


@dataclass(frozen=True, slots=True)
class Logout(Command):
    pass


@dataclass(frozen=True, slots=True)
class StartTls(Command):
    """After answering OK, call ``start_tls()`` before the handshake; input is held until then."""


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    mechanism: str  # upper-cased
    initial: bytes | None = field(default=None, repr=False)  # SASL-IR, decoded; "=" is b""


@dataclass(frozen=True, slots=True)
class Login(Command):
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """``caps``: every capability the client asked for (upper-cased); ``enabled``: those this core
    knows and offers, now in effect (write ``* ENABLED`` with them, RFC 5161 3.2)."""

    caps: tuple[str, ...]
    enabled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Select(Command):
    mailbox: str
    condstore: bool = False
    qresync: QresyncParams | None = None

    @property
    def readonly(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Examine(Select):
    @property
    def readonly(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Create(Command):
    mailbox: str
    special_use: tuple[str, ...] = ()  # RFC 6154 3: CREATE name (USE (\Sent))


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST with RFC 5258 selection and return options (upper-cased) and RFC 5819 STATUS items.
    ``extended`` is true when the client used any extended syntax (then CHILDREN etc. are sent
    only if asked, RFC 5258 3)."""

    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    returns: frozenset[str] = frozenset()  # SUBSCRIBED CHILDREN SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    pass


@dataclass(frozen=True, slots=True)
class Status(Command):
    mailbox: str
    items: tuple[str, ...]  # upper-cased StatusItem names, in the client's order


@dataclass(frozen=True, slots=True)
class Append(Command):
    mailbox: str
    flags: tuple[str, ...] = ()
    internaldate: datetime | None = None  # aware
    message: bytes = field(default=b"", repr=False)
    utf8: bool = False  # RFC 6855 4: UTF8 (~{n}) form
    binary: bool = False  # RFC 3516 4.4: literal8 (~{n})


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """After writing ``+ idling``, call ``expect_idle_done()``."""


@dataclass(frozen=True, slots=True)
class Check(Command):
    pass


@dataclass(frozen=True, slots=True)
class Close(Command):
    pass


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    pass


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    uids: SequenceSet | None = None  # RFC 4315 2.1: UID EXPUNGE set


@dataclass(frozen=True, slots=True)
class Search(Command):
    """``returns`` is None without RETURN (a plain ``* SEARCH`` for rev1), else the RFC 4731 options
    (upper-cased; an empty RETURN () means ALL)."""

    uid: bool
    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """``items``: the macros expanded; UID added for UID FETCH (RFC 9051 6.4.9) and MODSEQ when
    CHANGEDSINCE is given (RFC 7162 3.1.4.1)."""

    uid: bool
    numbers: SequenceSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False  # RFC 7162 3.2.6: UID FETCH ... (CHANGEDSINCE n VANISHED)


@dataclass(frozen=True, slots=True)
class Store(Command):
    uid: bool
    numbers: SequenceSet
    mode: Literal["set", "add", "remove"]
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None  # RFC 7162 3.1.3


@dataclass(frozen=True, slots=True)
class Copy(Command):
    uid: bool
    numbers: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Move(Command):
    uid: bool
    numbers: SequenceSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class Sort(Command):
    uid: bool
    criteria: tuple[SortCriterion, ...]
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Thread(Command):
    uid: bool
    algorithm: str  # upper-cased: ORDEREDSUBJECT, REFERENCES
    charset: str
    key: SearchKey


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971 3.1: field/value pairs, or None for ``ID NIL``."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class GetQuota(Command):
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot(Command):
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota(Command):
    """RFC 9208 4.3; parsed so it can be refused with NO (quotas are set with the CLI)."""

    root: str
    limits: tuple[tuple[str, int], ...]
