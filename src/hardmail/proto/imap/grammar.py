"""The command table (RFC 9051 6): verb → parser and the states it is valid in, and the
selected-state commands (FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, SORT, THREAD and their UID forms,
RFC 9051 6.4, RFC 4315 UID EXPUNGE, RFC 6851 MOVE, RFC 5256 SORT/THREAD).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from hardmail.proto.imap import commands as c
from hardmail.proto.imap import parser as p
from hardmail.proto.imap.lexer import ParseError, Reader
from hardmail.proto.imap.parse_fetch import fetch_items, fetch_modifiers, store_args
from hardmail.proto.imap.parse_search import search_args, sort_criteria, sort_tail, thread_algorithm
from hardmail.proto.imap.state import ConnState

UidParser = Callable[[Reader, p.Context, bool], c.Command]


def _fetch(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    r.sp()
    numbers = r.sequence_set()
    r.sp()
    items = fetch_items(r)
    changedsince, vanished = fetch_modifiers(r)
    r.end()
    if vanished and not (uid and changedsince is not None and ctx.qresync):  # RFC 7162 3.2.6
        raise ParseError("VANISHED needs UID FETCH, CHANGEDSINCE and ENABLE QRESYNC")
    names = {item.name for item in items}
    extra = [c.FetchItem(n) for n, wanted in (("UID", uid), ("MODSEQ", changedsince is not None))
             if wanted and n not in names]
    return c.Fetch(ctx.tag, uid, numbers, items + tuple(extra), changedsince, vanished)


def _store(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    r.sp()
    numbers = r.sequence_set()
    unchangedsince, mode, silent, flags = store_args(r)
    r.end()
    return c.Store(ctx.tag, uid, numbers, mode, silent, flags, unchangedsince)


def _search(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    charset, returns, key = search_args(r)
    return c.Search(ctx.tag, uid, key, charset, returns)


def _copy_like(cls: type[c.Copy] | type[c.Move]) -> UidParser:
    def parse(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
        r.sp()
        numbers = r.sequence_set()
        name = p.mailbox(r, ctx)
        r.end()
        return cls(ctx.tag, uid, numbers, name)

    return parse


def _expunge(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    numbers = None
    if uid:  # RFC 4315 2.1: UID EXPUNGE sequence-set
        r.sp()
        numbers = r.sequence_set()
    r.end()
    return c.Expunge(ctx.tag, numbers)


def _sort(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    r.sp()
    criteria = tuple(c.SortCriterion(key, reverse) for key, reverse in sort_criteria(r))
    charset, key = sort_tail(r)
    return c.Sort(ctx.tag, uid, criteria, charset, key)


def _thread(r: Reader, ctx: p.Context, uid: bool) -> c.Command:
    r.sp()
    algorithm = thread_algorithm(r)
    charset, key = sort_tail(r)
    return c.Thread(ctx.tag, uid, algorithm, charset, key)


UID_COMMANDS: dict[str, UidParser] = {
    "FETCH": _fetch, "STORE": _store, "SEARCH": _search, "COPY": _copy_like(c.Copy),
    "MOVE": _copy_like(c.Move), "EXPUNGE": _expunge, "SORT": _sort, "THREAD": _thread,
}


def _uid(r: Reader, ctx: p.Context) -> c.Command:
    r.sp()
    verb = r.keyword("a UID command")
    sub = UID_COMMANDS.get(verb)
    if sub is None:
        raise ParseError(f"UID {verb} is not a command")
    return sub(r, ctx, True)


def _plain(sub: UidParser) -> p.Parser:
    def parse(r: Reader, ctx: p.Context) -> c.Command:
        return sub(r, ctx, False)

    return parse


@dataclass(frozen=True, slots=True)
class Entry:
    parse: p.Parser
    states: frozenset[ConnState]


COMMANDS: dict[str, Entry] = {
    # RFC 9051 6.1: any state
    "CAPABILITY": Entry(p._no_args(c.Capability), p.ANY),
    "NOOP": Entry(p._no_args(c.Noop), p.ANY),
    "LOGOUT": Entry(p._no_args(c.Logout), p.ANY),
    "ID": Entry(p._id, p.ANY),  # RFC 2971 3.1
    # RFC 9051 6.2: not authenticated
    "STARTTLS": Entry(p._no_args(c.StartTls), p.NOT_AUTH),
    "AUTHENTICATE": Entry(p._authenticate, p.NOT_AUTH),
    "LOGIN": Entry(p._login, p.NOT_AUTH),
    # RFC 9051 6.3: authenticated (and selected)
    "ENABLE": Entry(p._enable, p.AUTH),
    "SELECT": Entry(p._select(c.Select), p.AUTH),
    "EXAMINE": Entry(p._select(c.Examine), p.AUTH),
    "CREATE": Entry(p._create, p.AUTH),
    "DELETE": Entry(p._one_mailbox(c.Delete), p.AUTH),
    "RENAME": Entry(p._rename, p.AUTH),
    "SUBSCRIBE": Entry(p._one_mailbox(c.Subscribe), p.AUTH),
    "UNSUBSCRIBE": Entry(p._one_mailbox(c.Unsubscribe), p.AUTH),
    "LIST": Entry(p._list, p.AUTH),
    "LSUB": Entry(p._lsub, p.AUTH),
    "NAMESPACE": Entry(p._no_args(c.Namespace), p.AUTH),  # RFC 2342 5
    "STATUS": Entry(p._status, p.AUTH),
    "APPEND": Entry(p._append, p.AUTH),
    "IDLE": Entry(p._no_args(c.Idle), p.AUTH),  # RFC 2177 3
    "GETQUOTA": Entry(p._getquota, p.AUTH),  # RFC 9208 4
    "GETQUOTAROOT": Entry(p._one_mailbox(c.GetQuotaRoot), p.AUTH),
    "SETQUOTA": Entry(p._setquota, p.AUTH),
    # RFC 9051 6.4: selected
    "CHECK": Entry(p._no_args(c.Check), p.SELECTED),  # RFC 3501 6.4.1 (gone in rev2; harmless)
    "CLOSE": Entry(p._no_args(c.Close), p.SELECTED),
    "UNSELECT": Entry(p._no_args(c.Unselect), p.SELECTED),  # RFC 3691 2
    "UID": Entry(_uid, p.SELECTED),
    **{verb: Entry(_plain(sub), p.SELECTED) for verb, sub in UID_COMMANDS.items()},
}


_MESSAGE_LITERAL = re.compile(rb"~?\{[0-9]{1,20}\+?\}")


def append_target(data: bytes, start: int, ctx: p.Context) -> str | None:
    """The mailbox of an APPEND whose text so far (``data``) ends with the message literal's
    header, or None when that literal is not the message (the mailbox name itself, say)."""
    r = Reader(data)
    r.pos = start
    try:
        name = p.mailbox(r, ctx)
        r.sp()
        if r.peek() == b"(":
            r.flag_list()
            r.sp()
        if r.peek() == b'"':
            r.date_time()
            r.sp()
        r.take(b"UTF8 (")
    except ParseError:
        return None
    return name if _MESSAGE_LITERAL.fullmatch(data, r.pos) else None


def parse_command(data: bytes, verb: str, start: int, ctx: p.Context) -> c.Command:
    """Parse ``data`` (one whole command) whose ``verb`` (a key of COMMANDS) ends at ``start``."""
    reader = Reader(data)
    reader.pos = start
    return COMMANDS[verb].parse(reader, ctx)
