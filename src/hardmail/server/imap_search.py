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
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hardmail.imap import search as evaluator
from hardmail.imap import sort as sorting
from hardmail.imap import thread as threading
from hardmail.mailbox import MessageRecord
from hardmail.mime.headers import HeaderBlock
from hardmail.mime.structure import crlf, parse_message
from hardmail.mime.text import MessageText
from hardmail.proto.imap import commands as c
from hardmail.proto.imap import searchkeys as keys
from hardmail.proto.imap.encode import esearch_response, search_response
from hardmail.server.imap_common import CommandFailed, Done, bad, no, ok
from hardmail.server.imap_work import _semaphore, read_header_block

if TYPE_CHECKING:
    from hardmail.server.imap_select import SelectedFolder
    from hardmail.server.imap_session import ImapSession

T = TypeVar("T")
CHARSETS = ("UTF-8", "US-ASCII")
BATCH = 200  # messages evaluated per thread hop when files must be read


class SearchMessage:
    """One message as the search evaluator sees it; its file read at most once, on first need
    (the header block only, unless a key wants the text)."""

    __slots__ = ("_path", "_text", "_whole", "flags", "internaldate", "modseq", "seq", "size", "uid")

    def __init__(self, seq: int, record: MessageRecord, path: Path | None, recent: bool, whole: bool) -> None:
        self.seq = seq
        self.uid = record.uid
        self.flags = record.flags | {"\\Recent"} if recent else record.flags
        self.internaldate: datetime = record.internaldate
        self.size = record.size
        self.modseq = record.modseq
        self._path = path
        self._whole = whole
        self._text: MessageText | None = None

    def _message(self) -> MessageText:
        if self._text is None:
            data = b""
            if self._path is not None:
                try:
                    data = crlf(self._path.read_bytes()) if self._whole else read_header_block(self._path)
                except OSError:  # expunged meanwhile: it matches nothing that needs its content
                    data = b""
            self._text = MessageText(data, parse_message(data))
        return self._text

    @property
    def headers(self) -> HeaderBlock:
        """The header block (SORT and THREAD keys, :mod:`hardmail.imap.sort`)."""
        return self._message().headers

    def header(self, name: str) -> list[str]:
        return self._message().header(name)

    def headers_text(self) -> str:
        return self._message().headers_text()

    def body_text(self) -> str:
        return self._message().body_text()

    def sent_date(self) -> date | None:
        values = self.header("date")
        return evaluator.parse_sent_date(values[0]) if values else None


def _check_charset(charset: str | None) -> None:
    if charset is not None and charset.upper() not in CHARSETS:  # RFC 9051 6.4.4
        raise CommandFailed(no("Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)"))


def _selected(session: ImapSession) -> SelectedFolder:
    if session.selected is None:
        raise CommandFailed(bad("No mailbox selected"))
    return session.selected


async def matching(session: ImapSession, key: keys.SearchKey, *, headers: bool = False) -> list[SearchMessage]:
    """The messages of the selected folder that ``key`` matches, in order (``headers``: with a
    path to their file for the header block, as SORT and THREAD need)."""
    folder = _selected(session)
    if evaluator.uses_modseq(key):
        session.condstore = True  # RFC 7162 3.1
    whole = evaluator.needs_body(key)
    files = whole or headers or evaluator.needs_headers(key)
    context = evaluator.SearchContext(
        max_seq=folder.exists, max_uid=folder.uids[-1] if folder.uids else 0,
        saved_uids=frozenset(session.saved_uids), now=datetime.fromtimestamp(session.ctx.clock.now(), UTC))
    records = [(seq, folder.records[uid]) for seq, uid in enumerate(list(folder.uids), 1) if uid in folder.records]
    if not files:
        return [m for m in (SearchMessage(seq, r, None, r.uid in folder.recent, False) for seq, r in records)
                if evaluator.evaluate(key, m, context)]
    found: list[SearchMessage] = []
    store = session.ctx.mailbox_store()
    for start in range(0, len(records), BATCH):  # one index query and one thread hop per batch
        chunk = records[start:start + BATCH]
        paths = await store.message_paths(folder.account, folder.name, [r.uid for _, r in chunk])
        batch = [SearchMessage(seq, r, paths.get(r.uid), r.uid in folder.recent, whole) for seq, r in chunk]
        found += await _in_thread(key, batch, context)
    return found


async def _in_thread(key: keys.SearchKey, messages: list[SearchMessage],
                     context: evaluator.SearchContext) -> list[SearchMessage]:
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
    modseq = max((m.modseq for m in found), default=None) if evaluator.uses_modseq(command.key) else None
    returns = command.returns
    if returns is None and session.rev2:
        returns = ()  # RFC 9051 7.3.4: IMAP4rev2 answers with ESEARCH (ALL)
    if returns is None:
        session.send(search_response(numbers, modseq))
        return ok("SEARCH completed")
    result = evaluator.esearch_result(returns, list(zip(numbers, (m.uid for m in found), strict=True)))
    if result.saved_uids is not None:  # RFC 5182 2.1
        session.saved_uids = sorted(result.saved_uids)
    if result.send:
        items = list(result.items)
        if modseq is not None and numbers:  # RFC 7162 3.1.5
            items.append(("MODSEQ", modseq))
        session.send(esearch_response(command.tag, command.uid, items))
    return ok("SEARCH completed")


async def sort(session: ImapSession, command: c.Sort) -> Done:
    _check_charset(command.charset)
    if any(criterion.key not in sorting.SORT_KEYS for criterion in command.criteria):
        return bad("Unknown sort key")
    found = await matching(session, command.key, headers=True)
    ordered = await _off_loop(sorting.sort_messages, found, command.criteria)
    session.send(b"* SORT" + b"".join(b" %d" % n for n in _numbers(ordered, command.uid)) + b"\r\n")  # RFC 5256 4
    return ok("SORT completed")


async def thread(session: ImapSession, command: c.Thread) -> Done:
    _check_charset(command.charset)
    if command.algorithm not in threading.THREAD_ALGORITHMS:
        return bad("Unknown threading algorithm")
    found = await matching(session, command.key, headers=True)
    nodes = await _off_loop(threading.thread_messages, command.algorithm, found)

    def number(message: SearchMessage) -> int:
        return message.uid if command.uid else message.seq

    text = threading.thread_list(nodes, number)
    session.send(b"* THREAD" + (b" " + text.encode() if text else b"") + b"\r\n")  # RFC 5256 4
    return ok("THREAD completed")


async def _off_loop(function: Callable[..., T], *args: Any) -> T:
    """SORT keys and THREAD links read every message's header block: a worker thread does it."""
    async with _semaphore():
        return await asyncio.to_thread(function, *args)


HANDLERS: dict[type, Any] = {
    c.Search: search,
    c.Sort: sort,
    c.Thread: thread,
}
