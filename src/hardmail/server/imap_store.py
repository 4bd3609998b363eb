"""IMAP commands that change messages: STORE (RFC 9051 6.4.6, UNCHANGEDSINCE RFC 7162 3.1.3),
COPY (6.4.7) and MOVE (RFC 6851) with COPYUID (RFC 4315), and APPEND (6.3.12) with APPENDUID,
APPENDLIMIT (RFC 7889) and quota (RFC 9208).

Durability: the tagged OK is written only after the mailbox store returned, and the store
returns only once files and index are fsync'd and committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hardmail.config.schema import Config
from hardmail.mailbox import FolderError, MessageRecord
from hardmail.mime.structure import crlf
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.encode import fetch_response
from hardmail.proto.imap.sequence import compress
from hardmail.server.imap_common import CommandFailed, Done, bad, folder_error_done, no, ok
from hardmail.server.imap_fetch import flag_atoms
from hardmail.server.imap_folders import folder_exists
from hardmail.server.imap_work import heavy

if TYPE_CHECKING:
    from hardmail.server.imap_select import SelectedFolder
    from hardmail.server.imap_session import ImapSession


def append_limit(config: Config) -> int:
    """APPENDLIMIT: ``[mailbox] append_limit`` (or the SMTP size limit) within ``[imap] max_literal``."""
    mailbox_limit: int | None = getattr(config, "append_limit", None)
    return min(config.imap.max_literal, mailbox_limit or config.smtp.max_message_size)


def _selected(session: ImapSession, writing: bool) -> SelectedFolder:
    folder = session.selected
    if folder is None:
        raise CommandFailed(bad("No mailbox selected"))
    if writing and folder.readonly:
        raise CommandFailed(no("Mailbox is read-only", "READ-ONLY"))
    return folder


def storable(flags: tuple[str, ...]) -> list[str]:
    """RFC 9051 2.3.2: \\Recent is the server's; a client cannot set or clear it."""
    return [flag for flag in flags if flag.upper() != "\\RECENT"]


async def store(session: ImapSession, command: c.Store) -> Done:
    folder = _selected(session, writing=True)
    if command.unchangedsince is not None:
        session.condstore = True  # RFC 7162 3.1
    targets = folder.resolve(session, command.numbers, command.uid)
    if not targets:
        return ok("STORE completed")
    result = await session.ctx.mailbox_store().store_flags(
        folder.account, folder.name, [record.uid for _, record in targets], command.mode, storable(command.flags),
        unchanged_since=command.unchangedsince)
    folder.note(result.changed)
    changed = {record.uid for record in result.changed}
    failed = set(result.failed_uids)
    for seq, record in targets:
        if record.uid not in changed:  # unchanged (or refused): no FETCH, as Dovecot
            continue
        if command.silent and not session.condstore:
            continue
        # RFC 7162 3.1.3: under CONDSTORE even .SILENT gets the new MODSEQ, without FLAGS
        session.send(_flags_response(session, seq, folder.records.get(record.uid, record), command.uid,
                                     flags=not command.silent))
    if failed:  # RFC 7162 3.1.3: MODIFIED with the messages not changed
        numbers = sorted(failed) if command.uid else sorted(s for s, r in targets if r.uid in failed)
        return ok("Conditional STORE failed for some messages", "MODIFIED " + compress(numbers))
    return ok("STORE completed")


def _flags_response(session: ImapSession, seq: int, record: MessageRecord, uid: bool, *, flags: bool) -> bytes:
    items: list[tuple[str, Any]] = []
    if uid or session.qresync:
        items.append(("UID", record.uid))
    if flags:
        items.append(("FLAGS", flag_atoms(session, record)))
    if session.condstore:
        items.append(("MODSEQ", [record.modseq]))
    return fetch_response(seq, items)


async def copy(session: ImapSession, command: c.Copy | c.Move) -> Done:
    moving = isinstance(command, c.Move)
    folder = _selected(session, writing=moving)
    verb = "MOVE" if moving else "COPY"
    targets = folder.resolve(session, command.numbers, command.uid)
    store_ = session.ctx.mailbox_store()
    if not await folder_exists(store_, folder.account, command.mailbox):
        return no("No such mailbox", "TRYCREATE")  # RFC 9051 6.4.7
    if not targets:
        return ok(f"{verb} completed (no messages)")
    uids = [record.uid for _, record in targets]
    try:
        if moving:
            result = await store_.move(folder.account, folder.name, uids, command.mailbox)
        else:
            result = await store_.copy(folder.account, folder.name, uids, command.mailbox)
    except FolderError as exc:
        return folder_error_done(exc, missing_code="TRYCREATE")
    copyuid = None
    if result.pairs:  # RFC 4315 3
        copyuid = (f"COPYUID {result.uidvalidity} {compress([p[0] for p in result.pairs])} "
                   f"{compress([p[1] for p in result.pairs])}")
    if not moving:
        return ok("COPY completed", copyuid)
    if copyuid is not None:  # RFC 6851 4.3: COPYUID in an untagged OK before the expunges
        session.send_untagged(f"OK [{copyuid}] Moved")
    folder.tell_expunged(session, sorted(p[0] for p in result.pairs))
    return ok("MOVE completed")


async def append_refusal(session: ImapSession, mailbox: str, size: int) -> Done | None:
    """What an APPEND of ``size`` bytes to ``mailbox`` gets before its data is sent, when it cannot
    succeed: TRYCREATE for a missing folder (RFC 9051 6.3.12), OVERQUOTA (RFC 9208 4.3)."""
    assert session.account is not None
    store_ = session.ctx.mailbox_store()
    if not await folder_exists(store_, session.account, mailbox):
        return no("No such mailbox", "TRYCREATE")
    quota = await store_.quota(session.account)
    if quota.storage_limit is not None and quota.storage_used + size > quota.storage_limit:
        return no("Over quota: the message does not fit in the mailbox", "OVERQUOTA")
    if quota.messages_limit is not None and quota.messages_used + 1 > quota.messages_limit:
        return no("Over quota: too many messages in the mailbox", "OVERQUOTA")
    return None


async def append(session: ImapSession, command: c.Append) -> Done:
    assert session.account is not None
    if len(command.message) > session.append_limit:
        return no(f"Message larger than the limit of {session.append_limit} bytes", "TOOBIG")  # RFC 7889
    if not command.message:
        return no("Empty message not saved", "CANNOT")
    store_ = session.ctx.mailbox_store()
    if not await folder_exists(store_, session.account, command.mailbox):
        return no("No such mailbox", "TRYCREATE")  # RFC 9051 6.3.12
    message = await heavy(len(command.message), crlf, command.message)  # RFC 5322 2.3: lines end in CRLF
    try:
        result = await store_.append(session.account, command.mailbox, message, storable(command.flags),
                                     command.internaldate)
    except FolderError as exc:
        return folder_error_done(exc, missing_code="TRYCREATE")
    session.log.event("imap.append", folder=command.mailbox, size=len(message), uid=result.uid)
    return ok("APPEND completed", f"APPENDUID {result.uidvalidity} {result.uid}")  # RFC 4315 3


HANDLERS: dict[type, Any] = {
    c.Store: store,
    c.Copy: copy,
    c.Move: copy,
    c.Append: append,
}
