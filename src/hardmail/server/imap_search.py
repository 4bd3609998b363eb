"""SEARCH (RFC 9051 6.4.4), ESEARCH (RFC 4731) with SAVE (RFC 5182 SEARCHRES), SORT and THREAD
(RFC 5256), over the selected folder.

:class:`SearchMessage` is the ``SearchableMessage`` the evaluator (:mod:`hardmail.imap.search`)
asks: flags, dates and sizes from the index; the header block read from the file only when a key
asks for a header, the whole message only when it asks for text. Keys that need no file are
evaluated on the event loop; the others in batches in worker threads (bounded, see
:mod:`hardmail.server.imap_work`), so a TEXT search over a big folder never stalls other sessions
and holds at most one batch of messages in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardmail.mailbox import MessageRecord
from hardmail.mime.headers import HeaderBlock, parse_header_block
from hardmail.mime.structure import parse_message
from hardmail.proto.imap import commands as c
from hardmail.proto.imap import searchkeys as keys
from hardmail.proto.imap.encode import esearch_response, search_response
from hardmail.server.imap_common import CommandFailed, Done, bad, no, ok
from hardmail.server.imap_folders import mailboxes
from hardmail.server.imap_work import _semaphore, read_header_block

if TYPE_CHECKING:
    from hardmail.server.imap_select import SelectedFolder
    from hardmail.server.imap_session import ImapSession

CHARSETS = ("UTF-8", "US-ASCII")
BATCH = 200  # messages evaluated per thread hop when files must be read
HEADER_KEYS = (keys.HeaderKey,)


class SearchMessage:
    """One message as the search evaluator sees it (files read at most once, on first need)."""

    __slots__ = ("_block", "_data", "_path", "flags", "internaldate", "modseq", "seq", "size", "uid")

    def __init__(self, seq: int, record: MessageRecord, path: Path | None, recent: bool) -> None:
        self.seq = seq
        self.uid = record.uid
        self.flags = record.flags | {"\\Recent"} if recent else record.flags
        self.internaldate: datetime = record.internaldate
        self.size = record.size
        self.modseq = record.modseq
        self._path = path
        self._block: HeaderBlock | None = None
        self._data: bytes | None = None

    def _header_block(self) -> HeaderBlock:
        if self._block is None:
            head = b""
            if self._data is not None:
                head = self._data
            elif self._path is not None:
                try:
                    head = read_header_block(self._path)
                except OSError:  # expunged meanwhile: it matches nothing that needs its header
                    head = b""
            self._block = parse_header_block(head, bare_lf=True)
        return self._block

    def _whole(self) -> bytes:
        if self._data is None:
            try:
                self._data = self._path.read_bytes() if self._path is not None else b""
            except OSError:
                self._data = b""
            self._block = None
        return self._data

    def header(self, name: str) -> list[str]:
        from hardmail.mime import text as mimetext

        block = self._header_block()
        return [mimetext.decode_header(block.raw_value(f)) for f in block.named(name.lower())]

    def headers_text(self) -> str:
        from hardmail.mime import text as mimetext

        block = self._header_block()
        return "\n".join(f"{f.name}: {mimetext.decode_header(block.raw_value(f))}" for f in block.fields)

    def body_text(self) -> str:
        from hardmail.mime import text as mimetext

        data = self._whole()
        return mimetext.body_text(data, parse_message(data))

    def sent_date(self) -> date | None:
        values = self.header("date")
        if not values:
            return None
        try:
            return parsedate_to_datetime(values[0]).date()  # RFC 9051 6.4.4: the date, zone ignored
        except (TypeError, ValueError, IndexError):
            return None


def _needs(key: keys.SearchKey) -> tuple[bool, bool]:
    """(header, body): whether any file must be read for ``key``."""
    nodes = keys.walk(key)
    body = any(isinstance(n, keys.TextKey) for n in nodes)
    header = body or any(isinstance(n, keys.HeaderKey) or (isinstance(n, keys.DateKey) and n.field == "sent")
                         for n in nodes)
    return header, body


def _check_charset(charset: str | None) -> None:
    if charset is not None and charset.upper() not in CHARSETS:  # RFC 9051 6.4.4
        raise CommandFailed(no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)"))


def _selected(session: ImapSession) -> SelectedFolder:
    if session.selected is None:
        raise CommandFailed(bad("No mailbox selected"))
    return session.selected


async def matching(session: ImapSession, key: keys.SearchKey) -> list[SearchMessage]:
    """The messages of the selected folder that ``key`` matches, in order."""
    from hardmail.imap import search as evaluator
    folder = _selected(session)
    if any(isinstance(n, keys.ModSeqKey) for n in keys.walk(key)):
        session.condstore = True  # RFC 7162 3.1
    header, _body = _needs(key)
    context = evaluator.SearchContext(
        max_seq=folder.exists, max_uid=folder.uids[-1] if folder.uids else 0,
        saved_uids=tuple(session.saved_uids), now=datetime.fromtimestamp(session.ctx.clock.now()).astimezone())
    found: list[SearchMessage] = []
    pending: list[SearchMessage] = []
    store = mailboxes(session.ctx)
    for seq, uid in enumerate(list(folder.uids), 1):
        record = folder.records.get(uid)
        if record is None:
            continue
        path = await store.message_path(folder.account, folder.name, uid) if header else None
        message = SearchMessage(seq, record, path, uid in folder.recent)
        if not header:
            if evaluator.evaluate(key, message, context):
                found.append(message)
            continue
        pending.append(message)
        if len(pending) >= BATCH:
            found += await _in_thread(key, pending, context)
            pending = []
    if pending:
        found += await _in_thread(key, pending, context)
    return found


async def _in_thread(key: keys.SearchKey, messages: list[SearchMessage], context: Any) -> list[SearchMessage]:
    from hardmail.imap import search as evaluator

    def run() -> list[SearchMessage]:
        return [m for m in messages if evaluator.evaluate(key, m, context)]

    async with _semaphore():
        return await asyncio.to_thread(run)


def _numbers(messages: Sequence[SearchMessage], uid: bool) -> list[int]:
    return [m.uid if uid else m.seq for m in messages]


async def search(session: ImapSession, command: c.Search) -> Done:
    _check_charset(command.charset)
    found = await matching(session, command.key)
    numbers = _numbers(found, command.uid)
    modseq = max((m.modseq for m in found), default=None)
    uses_modseq = any(isinstance(n, keys.ModSeqKey) for n in keys.walk(command.key))
    returns = command.returns
    if returns is None and session.rev2:
        returns = ("ALL",)  # RFC 9051 7.3.4: IMAP4rev2 answers with ESEARCH
    if returns is None:
        session.send(search_response(numbers, modseq if uses_modseq and found else None))
        return ok("SEARCH completed")
    options = set(returns) or {"ALL"}
    if "SAVE" in options:  # RFC 5182 2.1
        session.saved_uids = [m.uid for m in found]
        options.discard("SAVE")
        if not options:
            return ok("SEARCH completed, result saved")
    session.send(esearch_response(command.tag, command.uid, _esearch_items(numbers, options, modseq, uses_modseq)))
    return ok("SEARCH completed")


def _esearch_items(numbers: list[int], options: set[str], modseq: int | None,
                   uses_modseq: bool) -> list[tuple[str, Any]]:
    """RFC 4731 3.1: MIN MAX ALL COUNT, each only when there are matches (COUNT always)."""
    items: list[tuple[str, Any]] = []
    if numbers and "MIN" in options:
        items.append(("MIN", min(numbers)))
    if numbers and "MAX" in options:
        items.append(("MAX", max(numbers)))
    if numbers and "ALL" in options:
        items.append(("ALL", sorted(numbers)))
    if "COUNT" in options:
        items.append(("COUNT", len(numbers)))
    if numbers and uses_modseq and modseq is not None:  # RFC 7162 3.1.5
        items.append(("MODSEQ", modseq))
    return items


async def sort(session: ImapSession, command: c.Sort) -> Done:
    _check_charset(command.charset)
    from hardmail.imap import sort as sorting

    found = await matching(session, command.key)
    ordered = await _heavy_list(sorting.sort_messages, found, command.criteria)
    session.send(b"* SORT" + b"".join(b" %d" % n for n in _numbers(ordered, command.uid)) + b"\r\n")
    return ok("SORT completed")


async def thread(session: ImapSession, command: c.Thread) -> Done:
    _check_charset(command.charset)
    from hardmail.imap import thread as threading

    found = await matching(session, command.key)
    number = (lambda m: m.uid) if command.uid else (lambda m: m.seq)
    tree = await _heavy_list(threading.thread_messages, found, command.algorithm)
    session.send(b"* THREAD " + threading.encode_threads(tree, number) + b"\r\n")
    return ok("THREAD completed")


async def _heavy_list(function: Any, *args: Any) -> Any:
    async with _semaphore():
        return await asyncio.to_thread(function, *args)


HANDLERS: dict[type, Any] = {
    c.Search: search,
    c.Sort: sort,
    c.Thread: thread,
}
