"""FETCH (RFC 9051 6.4.5, 7.5.2; CONDSTORE/QRESYNC RFC 7162 3.1.4, 3.2.6; BINARY RFC 3516): the
response items of each message, built from the index and, only when an item needs it, the file.

What is read per message: FLAGS, UID, MODSEQ, INTERNALDATE and RFC822.SIZE come from the index
and open no file; ENVELOPE, RFC822.HEADER and BODY[HEADER...] of the message itself read only its
header block; the other body items read the whole file (MIME parsing of a big message runs in a
worker thread). Large responses are written in pieces, each after the client has taken enough of
the last (:meth:`ImapSession.send_large`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardmail.imap.values import Atom
from hardmail.mailbox import MessageRecord
from hardmail.mime import sections
from hardmail.mime.bodystructure import body_structure
from hardmail.mime.envelope import envelope
from hardmail.mime.headers import parse_header_block
from hardmail.mime.structure import Part, crlf, parse_message
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.encode import Literal8, date_time, encode_value
from hardmail.server.imap_common import CommandFailed, Done, bad, no, ok
from hardmail.server.imap_select import send_vanished_earlier
from hardmail.server.imap_work import heavy, read_header_block

if TYPE_CHECKING:
    from hardmail.server.imap_select import SelectedFolder
    from hardmail.server.imap_session import ImapSession

META_ITEMS = frozenset({"FLAGS", "UID", "MODSEQ", "INTERNALDATE", "RFC822.SIZE"})
LARGE_RESPONSE = 64 * 1024
META_BATCH = 500
FILE_WORK = 1 << 30  # the "size" given to imap_work.heavy for file reads: always in a thread
FILE_BATCH = 100
WHOLE_BATCH_BYTES = 1024 * 1024  # bytes of whole messages read in one thread hop (memory per session)


def header_only(item: c.FetchItem) -> bool:
    """An item that needs no more of the file than the message's own header block."""
    if item.name in ("ENVELOPE", "RFC822.HEADER"):
        return True
    section = item.section
    return (item.name == "BODY[]" and section is not None and not section.part
            and (section.text or "").startswith("HEADER"))


def internaldate(record: MessageRecord) -> str:
    """RFC 9051 9 date-time of the message's INTERNALDATE."""
    return date_time(record.internaldate)


def flag_atoms(session: ImapSession, record: MessageRecord) -> list[Any]:
    flags = sorted(record.flags)
    if session.selected is not None and not session.rev2 and record.uid in session.selected.recent:
        flags.append("\\Recent")  # RFC 3501 2.3.2: rev1 clients only (RFC 9051 dropped it)
    return [Atom(flag) for flag in flags]


@dataclass(slots=True)
class Loaded:
    """What was read of one message: the header block, or all of it, and its MIME tree."""

    data: bytes
    whole: bool
    tree: Part | None = None

    def part(self) -> Part:
        if self.tree is None:
            self.tree = parse_message(self.data)
        return self.tree


async def load(session: ImapSession, folder: SelectedFolder, record: MessageRecord, whole: bool) -> Loaded | None:
    """The message's bytes (None when its file is gone: expunged by another session meanwhile)."""
    store = session.ctx.mailbox_store()
    if whole:
        data = await store.read_message(folder.account, folder.name, record.uid)
        if data is None:
            return None
        loaded = Loaded(data, True)
        if record.size > 0:
            loaded.tree = await heavy(len(data), parse_message, data)
        return loaded
    path = await store.message_path(folder.account, folder.name, record.uid)
    if path is None:
        return None
    try:
        head = await heavy(FILE_WORK, read_header_block, path)
    except FileNotFoundError:  # renamed by a flag change between the look-up and the open
        data = await store.read_message(folder.account, folder.name, record.uid)
        return None if data is None else Loaded(data, True)
    return Loaded(head, False)


_HEADER = c.Section(text="HEADER")
_TEXT = c.Section(text="TEXT")


def body_value(item: c.FetchItem, loaded: Loaded) -> Any:
    """The value of a BODY[...], BINARY[...], BINARY.SIZE[...] or RFC822* item; a section that
    names no part of this message is an empty string (as Dovecot answers)."""
    if item.name == "RFC822":
        return loaded.data
    section = {"RFC822.HEADER": _HEADER, "RFC822.TEXT": _TEXT}.get(item.name, item.section)
    assert section is not None
    try:
        if item.name == "BINARY.SIZE[]":
            return sections.binary_size(loaded.data, loaded.part(), section.part)
        if item.name == "BINARY[]":
            return Literal8(sections.binary_section(loaded.data, loaded.part(), section.part, item.partial))
        return sections.fetch_section(loaded.data, loaded.part(), section, item.partial)
    except sections.UnknownCte:
        raise
    except sections.SectionError:
        return b""


def item_value(session: ImapSession, item: c.FetchItem, record: MessageRecord, loaded: Loaded | None) -> Any:
    name = item.name
    if name == "FLAGS":
        return flag_atoms(session, record)
    if name == "UID":
        return record.uid
    if name == "MODSEQ":
        return [record.modseq]  # RFC 7162 3.1.4.1: MODSEQ (n)
    if name == "INTERNALDATE":
        return internaldate(record)
    if name == "RFC822.SIZE":
        return record.size
    assert loaded is not None
    if name == "ENVELOPE":
        return envelope(parse_header_block(loaded.data, bare_lf=True) if not loaded.whole else loaded.part().header)
    if name in ("BODY", "BODYSTRUCTURE"):
        return body_structure(loaded.part(), loaded.data, extended=name == "BODYSTRUCTURE")
    return body_value(item, loaded)


def _check(session: ImapSession, command: c.Fetch) -> SelectedFolder:
    folder = session.selected
    if folder is None:
        raise CommandFailed(bad("No mailbox selected"))
    if command.vanished and not session.qresync:  # RFC 7162 3.2.6
        raise CommandFailed(bad("VANISHED needs ENABLE QRESYNC"))
    if command.vanished and (not command.uid or command.changedsince is None):
        raise CommandFailed(bad("VANISHED is only valid with UID FETCH and CHANGEDSINCE"))
    return folder


def fetch_line(seq: int, values: list[tuple[str, Any]], *, utf8: bool) -> bytes:
    """``* seq FETCH (...)`` with message data (BODY[...], RFC822...) always as a literal, as
    Dovecot and Cyrus write it: clients that take the data of a short section from a literal only
    (Python's imaplib users, scripts) get it the same way for every size."""
    out = [b"* %d FETCH (" % seq]
    for index, (name, value) in enumerate(values):
        out.append((b" " if index else b"") + name.encode("ascii") + b" ")
        if isinstance(value, bytes) and not isinstance(value, Literal8):
            out.append(b"{%d}\r\n" % len(value) + value)
        else:
            out.append(encode_value(value, utf8=utf8))
    out.append(b")\r\n")
    return b"".join(out)


async def fetch(session: ImapSession, command: c.Fetch) -> Done:
    folder = _check(session, command)
    if command.changedsince is not None or any(item.name == "MODSEQ" for item in command.items):
        session.condstore = True  # RFC 7162 3.1: CONDSTORE-enabling
    targets = folder.resolve(session, command.numbers, command.uid)
    if command.changedsince is not None:
        targets = [(seq, rec) for seq, rec in targets if rec.modseq > command.changedsince]
        if command.vanished:
            await send_vanished_earlier(session, folder, command.numbers, command.changedsince)
    items = list(command.items)
    names = {item.name for item in items}
    if session.condstore and "MODSEQ" not in names and (command.changedsince is not None or "FLAGS" in names):
        items.append(c.FetchItem("MODSEQ"))  # RFC 7162 3.1.4.1: with FLAGS once CONDSTORE is on
    if all(item.name in META_ITEMS for item in items):  # the index alone: no file, no await per message
        await _fetch_meta(session, targets, items)
        return ok("FETCH completed")
    if all(header_only(item) for item in items if item.name not in META_ITEMS):
        failures = await _fetch_headers(session, folder, targets, items)
    else:
        failures = await _fetch_whole(session, folder, targets, items)
    if failures:  # RFC 9051 7.5.2: messages expunged by another session while we read them
        return no("Some messages were expunged meanwhile and could not be fetched", "EXPUNGEISSUED")
    return ok("FETCH completed")


async def _fetch_meta(session: ImapSession, targets: list[tuple[int, MessageRecord]],
                      items: list[c.FetchItem]) -> None:
    """FLAGS, UID, MODSEQ, INTERNALDATE, RFC822.SIZE of many messages (``FETCH 1:* (FLAGS)`` of a
    big folder): built in one go, the client's pace checked every META_BATCH messages."""
    encoders = [_meta_encoder(session, item) for item in items]
    only = encoders[0] if len(encoders) == 1 else None  # FETCH 1:* (FLAGS): no join per message
    for start in range(0, len(targets), META_BATCH):
        batch = targets[start:start + META_BATCH]
        if only is not None:
            lines = [b"* %d FETCH (%b)\r\n" % (seq, only(record)) for seq, record in batch]
        else:
            lines = [b"* %d FETCH (%b)\r\n" % (seq, b" ".join([encode(record) for encode in encoders]))
                     for seq, record in batch]
        session.send(b"".join(lines))
        await session.pace()


def _meta_encoder(session: ImapSession, item: c.FetchItem) -> Callable[[MessageRecord], bytes]:
    """``NAME value`` of one index item, as :func:`fetch_response` writes it; FLAGS encoded once
    per distinct flag set (a big folder has a few combinations)."""
    prefix = item.response_name().encode("ascii") + b" "
    if item.name == "UID":
        return lambda record: b"%b%d" % (prefix, record.uid)
    if item.name == "MODSEQ":
        return lambda record: b"%b(%d)" % (prefix, record.modseq)
    if item.name == "RFC822.SIZE":
        return lambda record: b"%b%d" % (prefix, record.size)
    if item.name != "FLAGS":
        return lambda record: prefix + encode_value(item_value(session, item, record, None))
    recent = session.selected.recent if session.selected is not None and not session.rev2 else frozenset[int]()
    cache: dict[tuple[frozenset[str], bool], bytes] = {}

    def flags(record: MessageRecord) -> bytes:
        key = (record.flags, record.uid in recent)
        found = cache.get(key)
        if found is None:
            found = cache[key] = prefix + encode_value(flag_atoms(session, record))
        return found
    return flags


async def _fetch_headers(session: ImapSession, folder: SelectedFolder, targets: list[tuple[int, MessageRecord]],
                         items: list[c.FetchItem]) -> int:
    """Items that need no more than each message's header block (a client listing a folder):
    the files of FILE_BATCH messages found with one index query and read in one thread hop."""
    failures = 0
    store = session.ctx.mailbox_store()
    for start in range(0, len(targets), FILE_BATCH):
        chunk = targets[start:start + FILE_BATCH]
        paths = await store.message_paths(folder.account, folder.name, [record.uid for _, record in chunk])
        heads = await heavy(FILE_WORK, _read_heads, paths)
        for seq, record in chunk:
            head = heads.get(record.uid)
            if head is None:  # expunged (or renamed by a flag change) meanwhile: read it the slow way
                loaded = await load(session, folder, record, whole=False)
            else:
                loaded = Loaded(head, False)
            if loaded is None or not await _respond(session, folder, seq, record, items, loaded):
                failures += 1
    return failures


async def _fetch_whole(session: ImapSession, folder: SelectedFolder, targets: list[tuple[int, MessageRecord]],
                       items: list[c.FetchItem]) -> int:
    """Items that need whole messages: the files of small messages found and read by batches of
    at most FILE_BATCH messages and WHOLE_BATCH_BYTES (one index query, one thread hop), a big
    one on its own; its MIME tree is parsed in a worker thread."""
    failures = 0
    store = session.ctx.mailbox_store()
    for chunk in _whole_batches(targets):
        paths = await store.message_paths(folder.account, folder.name, [record.uid for _, record in chunk])
        datas = await heavy(FILE_WORK, _read_all, paths)
        for seq, record in chunk:
            data = datas.get(record.uid)
            if data is None:  # renamed by a flag change or expunged meanwhile: the slow way
                loaded = await load(session, folder, record, whole=True)
            else:
                loaded = Loaded(data, True, await heavy(len(data), parse_message, data))
            if loaded is None or not await _respond(session, folder, seq, record, items, loaded):
                failures += 1
    return failures


def _whole_batches(targets: list[tuple[int, MessageRecord]]) -> list[list[tuple[int, MessageRecord]]]:
    batches: list[list[tuple[int, MessageRecord]]] = [[]]
    size = 0
    for target in targets:
        if batches[-1] and (len(batches[-1]) >= FILE_BATCH or size + target[1].size > WHOLE_BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(target)
        size += target[1].size
    return [batch for batch in batches if batch]


def _read_all(paths: dict[int, Path]) -> dict[int, bytes]:
    datas = {}
    for uid, path in paths.items():
        try:
            datas[uid] = crlf(path.read_bytes())  # RFC 9051 2.2: served with CRLF line ends
        except OSError:
            continue
    return datas


def _read_heads(paths: dict[int, Path]) -> dict[int, bytes]:
    heads = {}
    for uid, path in paths.items():
        try:
            heads[uid] = read_header_block(path)
        except OSError:
            continue
    return heads


async def _respond(session: ImapSession, folder: SelectedFolder, seq: int, record: MessageRecord,
                   items: list[c.FetchItem], loaded: Loaded) -> bool:
    was_seen = "\\Seen" in record.flags
    record = await _mark_seen(session, folder, record, items)
    values: list[tuple[str, Any]] = []
    try:
        for item in items:
            values.append((item.response_name(), item_value(session, item, record, loaded)))
    except sections.UnknownCte:  # RFC 3516 4.1
        raise CommandFailed(no("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")) from None
    if not was_seen and "\\Seen" in record.flags and all(i.name != "FLAGS" for i in items):
        values.append(("FLAGS", flag_atoms(session, record)))  # RFC 9051 6.4.5: the \Seen change shows
    response = fetch_line(seq, values, utf8=session.utf8)
    if len(response) > LARGE_RESPONSE:
        await session.send_large(response)
    else:
        session.send(response)
        await session.pace()
    return True


async def _mark_seen(session: ImapSession, folder: SelectedFolder, record: MessageRecord,
                     items: list[c.FetchItem]) -> MessageRecord:
    """BODY[...] without PEEK, RFC822 and RFC822.TEXT set \\Seen (RFC 9051 6.4.5) in read-write mode."""
    if folder.readonly or "\\Seen" in record.flags or not any(item.sets_seen for item in items):
        return record
    result = await session.ctx.mailbox_store().store_flags(folder.account, folder.name, [record.uid], "add", ["\\Seen"])
    folder.note(result.changed)
    return next((r for r in result.changed if r.uid == record.uid), record)


HANDLERS: dict[type, Any] = {c.Fetch: fetch}
