"""IMAP command grammar (RFC 9051 6 and 9, with RFC 3501 compatibility and the extensions listed in
``COMMANDS``): one whole command's bytes → a ``commands`` dataclass, or :class:`ParseError`.

Dispatch goes through the explicit ``COMMANDS`` table, which also says in which connection states
each command is valid (RFC 9051 3, 6.1-6.4).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.lexer import ParseError, Reader, decode_text
from hardmail.proto.imap.mutf7 import Mutf7Error, mutf7_decode
from hardmail.proto.imap.sequence import SequenceSet
from hardmail.proto.imap.state import ConnState

ANY = frozenset(ConnState) - {ConnState.LOGOUT}
NOT_AUTH = frozenset({ConnState.NOT_AUTHENTICATED})
AUTH = frozenset({ConnState.AUTHENTICATED, ConnState.SELECTED})
SELECTED = frozenset({ConnState.SELECTED})
STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT",
                "HIGHESTMODSEQ", "APPENDLIMIT")
SPECIAL_USE = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash", "\\Important")
LIST_SELECT = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
LIST_RETURN = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")
MAX_ID_PAIRS = 30  # RFC 2971 3.3


@dataclass(frozen=True, slots=True)
class Context:
    """What a parse depends on besides the bytes."""

    tag: str
    utf8: bool = False  # UTF8=ACCEPT or IMAP4rev2 enabled: mailbox names are UTF-8 (RFC 9051 5.1)
    qresync: bool = False  # ENABLE QRESYNC done (RFC 7162 3.2.3)


Parser = Callable[[Reader, Context], c.Command]


# ----- shared argument helpers ----------------------------------------------------------------
def decode_mailbox(raw: bytes, utf8: bool, *, inbox: bool = True) -> str:
    text = decode_text(raw, "mailbox name")
    if not utf8 and text.isascii():
        _no_controls(text)
        try:
            text = mutf7_decode(text)
        except Mutf7Error:
            raise ParseError("Mailbox name is not valid modified UTF-7", status="NO") from None
    _no_controls(text)
    return "INBOX" if inbox and text.upper() == "INBOX" else text


def _no_controls(text: str) -> None:
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
        raise ParseError("Control character in mailbox name")


def mailbox(r: Reader, ctx: Context) -> str:
    r.sp()
    return decode_mailbox(r.astring("a mailbox name"), ctx.utf8)


def _no_args(cls: type[c.Command]) -> Parser:
    def parse(r: Reader, ctx: Context) -> c.Command:
        r.end()
        return cls(ctx.tag)

    return parse


def _one_mailbox(cls: Callable[[str, str], c.Command]) -> Parser:
    def parse(r: Reader, ctx: Context) -> c.Command:
        name = mailbox(r, ctx)
        r.end()
        return cls(ctx.tag, name)

    return parse


# ----- not authenticated ------------------------------------------------------------------------
def _login(r: Reader, ctx: Context) -> c.Command:
    r.sp()
    user = r.astring("a user name")
    r.sp()
    password = r.astring("a password")
    r.end()
    # 8-bit that is not UTF-8 is valid syntax (a literal is *CHAR8): it must reach the login engine
    # and fail there like any wrong password (and count toward bans), not get a BAD here.
    return c.Login(ctx.tag, user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))


def _authenticate(r: Reader, ctx: Context) -> c.Command:
    r.sp()
    mechanism = r.keyword("a SASL mechanism")
    initial: bytes | None = None
    if not r.at_end():  # RFC 4959 3: SP (base64 / "=")
        r.sp()
        raw = r.data[r.pos:]
        r.pos = len(r.data)
        initial = b"" if raw == b"=" else _base64(raw)
    return c.Authenticate(ctx.tag, mechanism, initial)


def _base64(raw: bytes) -> bytes:
    try:
        if not raw or len(raw) % 4:
            raise binascii.Error
        return base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise ParseError("Invalid base64 in the initial response") from None


# ----- authenticated ----------------------------------------------------------------------------
def _enable(r: Reader, ctx: Context) -> c.Command:
    caps: list[str] = []
    while not r.at_end() or not caps:
        r.sp()
        caps.append(r.keyword("a capability"))
    return c.Enable(ctx.tag, tuple(dict.fromkeys(caps)))


def _select(cls: type[c.Select]) -> Parser:
    def parse(r: Reader, ctx: Context) -> c.Command:
        name = mailbox(r, ctx)
        condstore = False
        qresync: c.QresyncParams | None = None
        if not r.at_end():
            r.sp()
            r.open()
            while True:
                param = r.keyword("a SELECT parameter")
                if param == "CONDSTORE" and not condstore:
                    condstore = True
                elif param == "QRESYNC" and qresync is None:
                    if not ctx.qresync:  # RFC 7162 3.2.5
                        raise ParseError("QRESYNC is not enabled")
                    qresync = _qresync(r)
                else:
                    raise ParseError(f"Invalid SELECT parameter {param}")
                if r.take(b")"):
                    break
                r.sp()
        r.end()
        return cls(ctx.tag, name, condstore, qresync)

    return parse


def _qresync(r: Reader) -> c.QresyncParams:
    """RFC 7162 3.2.5.1: SP "(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"."""
    r.sp()
    r.open()
    uidvalidity = r.number(what="a UIDVALIDITY")  # 0 (no valid state) is taken as Dovecot does; it
    r.sp()  # never matches, so the client just gets a full resync
    modseq = r.number64(what="a mod-sequence value")
    known: SequenceSet | None = None
    seqs = uids = None
    if r.take(b" "):
        if r.peek() != b"(":
            known = _no_star(r.sequence_set())
            if not r.take(b" "):
                r.close()
                return c.QresyncParams(uidvalidity, modseq, known)
        r.open()
        seqs = _no_star(r.sequence_set())
        r.sp()
        uids = _no_star(r.sequence_set())
        r.close()
    r.close()
    return c.QresyncParams(uidvalidity, modseq, known, seqs, uids)


def _no_star(numbers: SequenceSet) -> SequenceSet:
    if numbers.saved or numbers.uses_star:
        raise ParseError("'*' and '$' are not allowed in QRESYNC sets")
    return numbers


def _create(r: Reader, ctx: Context) -> c.Command:
    name = mailbox(r, ctx)
    uses: tuple[str, ...] = ()
    if not r.at_end():  # RFC 6154 3: create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"
        r.sp()
        r.open()
        if r.keyword("a CREATE parameter") != "USE":
            raise ParseError("Unknown CREATE parameter")
        r.sp()
        uses = _use_attrs(r)
        r.close()
    r.end()
    return c.Create(ctx.tag, name, uses)


def _use_attrs(r: Reader) -> tuple[str, ...]:
    r.open()
    out: list[str] = []
    known = {s.upper(): s for s in SPECIAL_USE}
    while not r.take(b")"):
        if out:
            r.sp()
        r.expect(b"\\", "a special-use attribute")
        attr = "\\" + r.atom("a special-use attribute")
        if attr.upper() not in known:
            raise ParseError(f"Unknown special-use attribute {attr}", status="NO", code="USEATTR")
        out.append(known[attr.upper()])
    return tuple(dict.fromkeys(out))


def _rename(r: Reader, ctx: Context) -> c.Command:
    old = mailbox(r, ctx)
    new = mailbox(r, ctx)
    r.end()
    return c.Rename(ctx.tag, old, new)


def _list(r: Reader, ctx: Context) -> c.Command:
    """RFC 5258 3: LIST [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]."""
    r.sp()
    selection: list[str] = []
    extended = r.peek() == b"("
    if extended:
        selection = _options(r, LIST_SELECT, "selection")
        if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH", "REMOTE"}:
            raise ParseError("RECURSIVEMATCH needs another selection option")  # RFC 5258 3.1
        r.sp()
    reference = decode_mailbox(r.astring("a reference name"), ctx.utf8, inbox=False)
    r.sp()
    if r.peek() == b"(":
        extended = True
        r.open()
        patterns = [_pattern(r, ctx)]
        while not r.take(b")"):
            r.sp()
            patterns.append(_pattern(r, ctx))
    else:
        patterns = [_pattern(r, ctx)]
    extended = extended or not r.at_end()
    returns, status = _list_returns(r)
    r.end()
    return c.List(ctx.tag, reference, tuple(patterns), frozenset(selection), frozenset(returns), status,
                  extended)


def _pattern(r: Reader, ctx: Context) -> str:
    return decode_mailbox(r.list_mailbox(), ctx.utf8, inbox=False)


def _list_returns(r: Reader) -> tuple[list[str], tuple[str, ...]]:
    if r.at_end():
        return [], ()
    r.sp()
    r.expect(b"RETURN", "RETURN")
    r.sp()
    r.open()
    returns: list[str] = []
    status: tuple[str, ...] = ()
    while not r.take(b")"):
        if returns:
            r.sp()
        option = r.keyword("a LIST return option")
        if option not in LIST_RETURN:
            raise ParseError(f"Unknown LIST return option {option}")
        if option == "STATUS":  # RFC 5819 2
            r.sp()
            status = _status_items(r)
        returns.append(option)
    return returns, status


def _options(r: Reader, known: tuple[str, ...], what: str) -> list[str]:
    r.open()
    out: list[str] = []
    while not r.take(b")"):
        if out:
            r.sp()
        option = r.keyword(f"a {what} option")
        if option not in known:
            raise ParseError(f"Unknown {what} option {option}")
        out.append(option)
    return list(dict.fromkeys(out))


def _lsub(r: Reader, ctx: Context) -> c.Command:
    r.sp()
    reference = decode_mailbox(r.astring("a reference name"), ctx.utf8, inbox=False)
    r.sp()
    pattern = _pattern(r, ctx)
    r.end()
    return c.Lsub(ctx.tag, reference, pattern)


def _status_items(r: Reader) -> tuple[str, ...]:
    r.open()
    items = [r.keyword("a status item")]
    while not r.take(b")"):
        r.sp()
        items.append(r.keyword("a status item"))
    for item in items:
        if item not in STATUS_ITEMS:
            raise ParseError(f"Unknown status item {item}")
    return tuple(dict.fromkeys(items))


def _status(r: Reader, ctx: Context) -> c.Command:
    name = mailbox(r, ctx)
    r.sp()
    items = _status_items(r)
    r.end()
    return c.Status(ctx.tag, name, items)


def _append(r: Reader, ctx: Context) -> c.Command:
    """RFC 9051 6.3.12 + RFC 3516 4.4 (literal8) + RFC 6855 4 (UTF8 (literal8))."""
    name = mailbox(r, ctx)
    r.sp()
    flags: tuple[str, ...] = ()
    when = None
    if r.peek() == b"(":
        flags = r.flag_list()
        r.sp()
    if r.peek() == b'"':
        when = r.date_time()
        r.sp()
    utf8 = r.take(b"UTF8 (")
    message, binary = r.literal(allow_binary=True)
    if utf8:
        if not binary:
            raise ParseError("UTF8 APPEND data must be a literal8")
        r.close()
    r.end()
    return c.Append(ctx.tag, name, flags, when, message, utf8, binary and not utf8)


def _id(r: Reader, ctx: Context) -> c.Command:
    r.sp()
    if r.take(b"NIL"):
        r.end()
        return c.Id(ctx.tag, None)
    r.open()
    pairs: list[tuple[str, str | None]] = []
    while not r.take(b")"):
        if pairs:
            r.sp()
        key = decode_text(r.string(), "ID field")
        r.sp()
        value = r.nstring()
        pairs.append((key, None if value is None else decode_text(value, "ID value")))
        if len(pairs) > MAX_ID_PAIRS:
            raise ParseError("Too many ID fields")
    r.end()
    return c.Id(ctx.tag, tuple(pairs))


def _getquota(r: Reader, ctx: Context) -> c.Command:
    r.sp()
    root = decode_text(r.astring("a quota root"), "quota root")
    r.end()
    return c.GetQuota(ctx.tag, root)


def _setquota(r: Reader, ctx: Context) -> c.Command:
    """RFC 9208 4.3: SETQUOTA SP quota-root-name SP "(" [resource-name SP resource-limit ...] ")"."""
    r.sp()
    root = decode_text(r.astring("a quota root"), "quota root")
    r.sp()
    r.open()
    limits: list[tuple[str, int]] = []
    while not r.take(b")"):
        if limits:
            r.sp()
        resource = r.keyword("a resource name")
        r.sp()
        limits.append((resource, r.number64(what="a resource limit")))
    r.end()
    return c.SetQuota(ctx.tag, root, tuple(limits))
