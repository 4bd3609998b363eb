"""The selected state (RFC 9051 6.3.2, 7.5; CONDSTORE/QRESYNC RFC 7162): SELECT, EXAMINE, CLOSE,
UNSELECT (RFC 3691), EXPUNGE and UID EXPUNGE (RFC 4315 2.1), and :class:`SelectedFolder`, the
session's view of the folder: sequence numbers ↔ UIDs, each message's record as last told to the
client, and the untagged updates (EXISTS, EXPUNGE or VANISHED, FETCH of changed flags) that bring
the client up to date with changes made by other sessions, other processes and deliveries.

Changes are read from the index (``changes_since`` the MODSEQ this view has reached) when the
folder's change subscription says something changed, so a session does no work for a folder
that nobody touches. RFC 9051 7.5.1: EXPUNGE is not sent during FETCH, STORE or SEARCH by
sequence number; such expunges stay pending (the messages keep their numbers) until a command
that may carry them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hardmail.mailbox import Changes, FolderSnapshot, MessageRecord, Subscription
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.sequence import SequenceSet, compress
from hardmail.server.imap_common import CommandFailed, Done, bad, no, ok
from hardmail.server.imap_folders import mailboxes, watch, wire_name

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
NO_UPDATES_AFTER = frozenset({"LOGOUT", "SELECT", "EXAMINE", "IDLE", "CLOSE", "UNSELECT"})


def defers_expunge(command: c.Command) -> bool:
    """RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE, SEARCH (and SORT, THREAD, COPY) by
    message number; the UID forms may carry them."""
    kinds = (c.Fetch, c.Store, c.Search, c.Sort, c.Thread, c.Copy)
    return isinstance(command, kinds) and not getattr(command, "uid", False)


class SelectedFolder:
    def __init__(self, account: str, snapshot: FolderSnapshot, readonly: bool,
                 subscription: Subscription | None) -> None:
        self.account = account
        self.name = snapshot.info.name
        self.readonly = readonly
        self.uidvalidity = snapshot.info.uidvalidity
        self.highestmodseq = snapshot.info.highestmodseq
        self.uids = [record.uid for record in snapshot.messages]
        self.records = {record.uid: record for record in snapshot.messages}
        self.recent = set(snapshot.recent_uids)
        self.pending: set[int] = set()  # expunged elsewhere, not yet told (the numbers stay)
        self.subscription = subscription
        self.told_exists = len(self.uids)

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    # ----- numbers --------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        at = bisect.bisect_left(self.uids, uid)
        return at + 1 if at < len(self.uids) and self.uids[at] == uid else None

    def resolve(self, session: ImapSession, numbers: SequenceSet, uid: bool) -> list[tuple[int, MessageRecord]]:
        """(sequence number, record) of the messages a command names, in order."""
        if uid:
            chosen = numbers.filter(self.uids, saved=session.saved_uids)
            return [(self.seq_of(u) or 0, self.records[u]) for u in chosen]
        if not numbers.saved and numbers.exceeds(self.exists):  # RFC 9051 9: seq-number must exist
            raise CommandFailed(bad("Invalid message sequence number"))
        saved = [s for s in (self.seq_of(u) for u in session.saved_uids) if s is not None]
        return [(seq, self.records[self.uids[seq - 1]]) for seq in numbers.resolve(self.exists, saved)]

    def note(self, records: Iterable[MessageRecord]) -> None:
        """Records this session changed itself (it told the client already, or will)."""
        for record in records:
            if record.uid in self.records:
                self.records[record.uid] = record

    # ----- updates ---------------------------------------------------------------------------------
    def wants_refresh(self) -> bool:
        sub = self.subscription
        return sub is None or sub.changed.is_set() or bool(self.pending)

    async def send_updates(self, session: ImapSession, *, expunges: bool = True) -> None:
        """After a command: what changed meanwhile, when the subscription says something did."""
        if self.subscription is not None and (self.subscription.changed.is_set() or self.pending):
            await self.refresh(session, expunges=expunges)

    async def refresh(self, session: ImapSession, *, expunges: bool = True) -> None:
        if self.subscription is not None:
            self.subscription.changed.clear()  # before looking: a change during the look sets it again
        changes = await mailboxes(session.ctx).changes_since(self.account, self.name, self.highestmodseq)
        self.apply(session, changes, expunges=expunges)

    def apply(self, session: ImapSession, changes: Changes, *, expunges: bool = True) -> None:
        vanished = {uid for uid in changes.vanished if uid in self.records}
        self.pending |= vanished
        for record in changes.changed:
            if record.uid in self.pending:
                continue
            known = self.records.get(record.uid)
            if known is None:
                bisect.insort(self.uids, record.uid)
                self.recent.add(record.uid)
                self.records[record.uid] = record
            elif known.modseq < record.modseq:
                self.records[record.uid] = record
                if known.flags != record.flags or session.condstore:
                    session.send(self.flags_line(session, record))
        self.highestmodseq = max(self.highestmodseq, changes.highestmodseq)
        if expunges and self.pending:
            self.tell_expunged(session, sorted(self.pending))
        if self.exists != self.told_exists:
            session.send_untagged(f"{self.exists} EXISTS")
            self.told_exists = self.exists

    def flags_line(self, session: ImapSession, record: MessageRecord) -> bytes:
        from hardmail.proto.imap.encode import fetch_response
        from hardmail.server.imap_fetch import flag_atoms  # fetch imports this module

        items: list[tuple[str, Any]] = [("FLAGS", flag_atoms(session, record))]
        if session.qresync:
            items.insert(0, ("UID", record.uid))  # RFC 7162 3.2.4
        if session.condstore:
            items.append(("MODSEQ", [record.modseq]))
        return fetch_response(self.seq_of(record.uid) or 0, items)

    def tell_expunged(self, session: ImapSession, uids: list[int]) -> None:
        """EXPUNGE (numbers, each after the ones before are gone) or, under QRESYNC, one VANISHED."""
        gone = [uid for uid in uids if uid in self.records]
        if session.qresync and gone:  # RFC 7162 3.2.10
            session.send_untagged("VANISHED " + compress(gone))
        for uid in gone:
            seq = self.seq_of(uid)
            if seq is None:
                continue
            del self.uids[seq - 1]
            self.records.pop(uid, None)
            self.recent.discard(uid)
            if not session.qresync:
                session.send_untagged(f"{seq} EXPUNGE")
        self.pending.difference_update(uids)
        self.told_exists = self.exists


# ----- SELECT / EXAMINE -------------------------------------------------------------------------


def _flags_in_use(snapshot: FolderSnapshot) -> list[str]:
    keywords = sorted({flag for record in snapshot.messages for flag in record.flags if not flag.startswith("\\")})
    return [*SYSTEM_FLAGS, *keywords[:200]]


async def select(session: ImapSession, command: c.Select) -> Done:
    assert session.account is not None
    if session.selected is not None:  # RFC 7162 3.2.11: the old mailbox is closed, said so
        session.selected.close()
        session.selected = None
        session.conn.deselected()
        session.send_untagged("OK [CLOSED] Previous mailbox closed")
    if command.qresync is not None and not session.qresync:
        return bad("QRESYNC parameters need ENABLE QRESYNC first")  # RFC 7162 3.2.5
    if command.condstore:
        session.condstore = True
    store = mailboxes(session.ctx)
    if await store.folder(session.account, command.mailbox) is None:
        return no("No such mailbox", "NONEXISTENT")
    snapshot = await store.sync(session.account, command.mailbox, claim_recent=not command.readonly)
    subscription = await watch(session.ctx, session.account, snapshot.info.name)
    folder = SelectedFolder(session.account, snapshot, command.readonly, subscription)
    session.selected = folder
    session.saved_uids = []
    _opening_responses(session, folder, snapshot)
    if command.qresync is not None:
        await _qresync(session, folder, command.qresync)
    session.conn.selected()
    return ok("EXAMINE completed" if command.readonly else "SELECT completed",
              "READ-ONLY" if command.readonly else "READ-WRITE")


def _opening_responses(session: ImapSession, folder: SelectedFolder, snapshot: FolderSnapshot) -> None:
    info = snapshot.info
    flags = _flags_in_use(snapshot)
    session.send_untagged(f"{folder.exists} EXISTS")
    if not session.rev2:  # RFC 3501 6.3.1
        session.send_untagged(f"{len(folder.recent)} RECENT")
        first_unseen = next((i + 1 for i, r in enumerate(snapshot.messages) if "\\Seen" not in r.flags), None)
        if first_unseen is not None:
            session.send_untagged(f"OK [UNSEEN {first_unseen}] First unseen")
    session.send_untagged("FLAGS (" + " ".join(flags) + ")")
    permanent = "" if folder.readonly else " ".join([*flags, "\\*"])
    session.send_untagged(f"OK [PERMANENTFLAGS ({permanent})] Flags permitted")
    session.send_untagged(f"OK [UIDVALIDITY {info.uidvalidity}] UIDs valid")
    session.send_untagged(f"OK [UIDNEXT {info.uidnext}] Predicted next UID")
    session.send_untagged(f"OK [HIGHESTMODSEQ {info.highestmodseq}] Highest")
    if session.rev2:  # RFC 9051 6.3.2: the LIST response of the mailbox
        session.send(b'* LIST () "/" ' + wire_name(session, info.name) + b"\r\n")


async def _qresync(session: ImapSession, folder: SelectedFolder, params: c.QresyncParams) -> None:
    """RFC 7162 3.2.5.2: what changed since the client's last sync, if its UIDVALIDITY still holds."""
    if params.uidvalidity != folder.uidvalidity:
        return
    changes = await mailboxes(session.ctx).changes_since(folder.account, folder.name, params.modseq)
    vanished = changes.vanished
    if params.known_uids is not None:
        vanished = params.known_uids.filter(sorted(vanished))
    if vanished:
        session.send_untagged("VANISHED (EARLIER) " + compress(vanished))
    for record in changes.changed:
        seq = folder.seq_of(record.uid)
        if seq is not None:
            session.send(folder.flags_line(session, folder.records[record.uid]))


async def send_vanished_earlier(session: ImapSession, folder: SelectedFolder, numbers: SequenceSet,
                                modseq: int) -> None:
    """RFC 7162 3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED): the UIDs expunged since ``m``."""
    changes = await mailboxes(session.ctx).changes_since(folder.account, folder.name, modseq)
    gone = sorted(changes.vanished)
    if gone:
        top = max(gone[-1], folder.uids[-1] if folder.uids else 0)
        chosen = [uid for uid in gone if numbers.contains(uid, top)]
        if chosen:
            session.send_untagged("VANISHED (EARLIER) " + compress(chosen))


# ----- CLOSE / UNSELECT / EXPUNGE ----------------------------------------------------------------


def _deselect(session: ImapSession) -> None:
    if session.selected is not None:
        session.selected.close()
    session.selected = None
    session.saved_uids = []
    session.conn.deselected()


async def close(session: ImapSession, command: c.Close | c.Unselect) -> Done:
    folder = session.selected
    if folder is None:
        return bad("No mailbox selected")
    if isinstance(command, c.Close) and not folder.readonly:  # RFC 9051 6.4.1: expunge, silently
        await mailboxes(session.ctx).expunge(folder.account, folder.name)
    _deselect(session)
    return ok("CLOSE completed" if isinstance(command, c.Close) else "UNSELECT completed")


async def expunge(session: ImapSession, command: c.Expunge) -> Done:
    folder = session.selected
    if folder is None:
        return bad("No mailbox selected")
    if folder.readonly:
        return no("Mailbox is read-only", "READ-ONLY")
    uids = None
    if command.uids is not None:
        uids = command.uids.filter(folder.uids, saved=session.saved_uids)
        if not uids:
            return ok("EXPUNGE completed")
    gone = await mailboxes(session.ctx).expunge(folder.account, folder.name, uids)
    folder.tell_expunged(session, sorted(gone))  # our own: at once (RFC 9051 6.4.3)
    return ok("EXPUNGE completed")


HANDLERS: dict[type, Any] = {
    c.Select: select,
    c.Examine: select,
    c.Close: close,
    c.Unselect: close,
    c.Expunge: expunge,
}
