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

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from hardmail.core.bulk import bulk_allocation
from hardmail.imap.selected import SelectedView, expunge_allowed
from hardmail.mailbox import Changes, FolderSnapshot, MessageRecord, Subscription
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.sequence import STAR, SequenceSet, compress
from hardmail.server.imap_common import CommandFailed, Done, bad, no, ok
from hardmail.server.imap_folders import folder_exists, watch, wire_name

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
NO_UPDATES_AFTER = frozenset({"LOGOUT", "SELECT", "EXAMINE", "IDLE", "CLOSE", "UNSELECT"})


def defers_expunge(command: c.Command) -> bool:
    """RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE, SEARCH (and SORT, THREAD) by
    message number; the UID forms may carry them."""
    return not expunge_allowed(command)


def _beyond(numbers: SequenceSet, exists: int) -> bool:
    """A message number past the last one, outside a range that ends in ``*``: ``1:*`` of an
    empty folder is no message (as Dovecot answers it), ``5`` of a folder of 3 is an error."""
    return any(n > exists for lo, hi in numbers.ranges if STAR not in (lo, hi) for n in (lo, hi))


class SelectedFolder:
    """The selected folder: the view (numbers, what the client was told) and each message's record."""

    def __init__(self, session: ImapSession, snapshot: FolderSnapshot, readonly: bool,
                 subscription: Subscription | None) -> None:
        assert session.account is not None
        self.account = session.account
        self.name = snapshot.info.name
        self.readonly = readonly
        self.uidvalidity = snapshot.info.uidvalidity
        self.highestmodseq = snapshot.info.highestmodseq
        with bulk_allocation():
            self.view = SelectedView(snapshot.messages, condstore=session.condstore, qresync=session.qresync,
                                     recent=snapshot.recent_uids, rev1=not session.rev2)
            self.records = {record.uid: record for record in snapshot.messages}
        self.subscription = subscription

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    # ----- numbers --------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return self.view.exists

    @property
    def uids(self) -> Sequence[int]:
        return self.view.uids

    @property
    def recent(self) -> set[int]:
        return self.view.recent

    def seq_of(self, uid: int) -> int | None:
        return self.view.seq_of(uid)

    def resolve(self, session: ImapSession, numbers: SequenceSet, uid: bool) -> list[tuple[int, MessageRecord]]:
        """(sequence number, record) of the messages a command names, in order."""
        uids = self.view.uids
        if uid:
            chosen = numbers.filter(uids, saved=sorted(session.saved_uids))
            return [(self.view.seq_of(u) or 0, self.records[u]) for u in chosen if u in self.records]
        if not numbers.saved and _beyond(numbers, len(uids)):  # RFC 9051 9: seq-number must exist
            raise CommandFailed(bad("Invalid message sequence number"))
        saved = [s for s in (self.view.seq_of(u) for u in session.saved_uids) if s is not None]
        seqs, records = numbers.resolve(len(uids), saved), self.records
        with bulk_allocation():
            if len(seqs) == len(uids):  # every message (1:*): seqs is 1..n
                return list(zip(seqs, map(records.__getitem__, uids), strict=True))
            return [(seq, records[uids[seq - 1]]) for seq in seqs]

    def note(self, records: Iterable[MessageRecord]) -> None:
        """Records this session changed itself (it tells the client, or did)."""
        for record in records:
            if record.uid in self.records:
                self.records[record.uid] = record
                self.view.note(record)

    # ----- updates ---------------------------------------------------------------------------------
    def _modes(self, session: ImapSession) -> None:
        """CONDSTORE may be turned on after SELECT by a CONDSTORE-enabling command (RFC 7162 3.1)."""
        self.view.condstore = self.view.condstore or session.condstore

    async def send_updates(self, session: ImapSession, *, expunges: bool = True) -> None:
        """After a command: what changed meanwhile, when the subscription says something did."""
        if self.subscription is not None and self.subscription.changed.is_set():
            await self.refresh(session, expunges=expunges)
        elif expunges:
            self._send(session, self.view.flush_expunges())

    async def refresh(self, session: ImapSession, *, expunges: bool = True) -> None:
        if self.subscription is not None:
            self.subscription.changed.clear()  # before looking: a change during the look sets it again
        store = session.ctx.mailbox_store()
        changes = await store.changes_since(self.account, self.name, self.highestmodseq)
        claimed = (0, 0)
        if not self.readonly and any(r.uid > self.view.max_uid for r in changes.changed):
            claimed = await store.claim_recent(self.account, self.name)  # the first session told
        self.apply(session, changes, expunges=expunges, claimed=claimed)

    def apply(self, session: ImapSession, changes: Changes, *, expunges: bool = True,
              claimed: tuple[int, int] = (0, 0)) -> None:
        """``claimed``: the UIDs [first, upto) this session claimed as \\Recent (RFC 3501 2.3.2)."""
        self._modes(session)
        top = self.view.max_uid
        for record in changes.changed:
            if record.uid in self.records or record.uid > top:
                self.records[record.uid] = record
        arrivals = [r.uid for r in changes.changed if r.uid > top and claimed[0] <= r.uid < claimed[1]]
        lines = self.view.apply_changes(changes.changed, changes.vanished, allow_expunge=expunges, recent=arrivals)
        self.highestmodseq = max(self.highestmodseq, changes.highestmodseq)
        self._forget_gone(changes.vanished)
        self._send(session, lines)

    def _forget_gone(self, uids: Iterable[int]) -> None:
        for uid in uids:
            if uid in self.records and self.view.known(uid) is None:
                del self.records[uid]

    @staticmethod
    def _send(session: ImapSession, lines: list[bytes]) -> None:
        for line in lines:
            session.send(line)

    def flags_line(self, session: ImapSession, record: MessageRecord) -> bytes:
        self._modes(session)
        return self.view.flags_fetch(self.view.seq_of(record.uid) or 0, record.uid)

    def tell_expunged(self, session: ImapSession, uids: list[int]) -> None:
        """The session's own EXPUNGE or MOVE: EXPUNGE (or VANISHED under QRESYNC) at once."""
        self._send(session, self.view.expunged_by_self(uids))
        self._forget_gone(uids)


# ----- SELECT / EXAMINE -------------------------------------------------------------------------


def _flags_in_use(snapshot: FolderSnapshot) -> list[str]:
    spelling: dict[str, str] = {}  # RFC 9051 2.3.2: one keyword whatever its case
    for record in snapshot.messages:
        for flag in record.flags:
            if not flag.startswith("\\"):
                spelling.setdefault(flag.lower(), flag)
    return [*SYSTEM_FLAGS, *sorted(spelling.values())[:200]]


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
    store = session.ctx.mailbox_store()
    if not await folder_exists(store, session.account, command.mailbox):
        return no("No such mailbox", "NONEXISTENT")
    snapshot = await store.sync(session.account, command.mailbox, claim_recent=not command.readonly)
    subscription = await watch(session.ctx, session.account, snapshot.info.name)
    folder = SelectedFolder(session, snapshot, command.readonly, subscription)
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
    changes = await session.ctx.mailbox_store().changes_since(folder.account, folder.name, params.modseq)
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
    changes = await session.ctx.mailbox_store().changes_since(folder.account, folder.name, modseq)
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
        await session.ctx.mailbox_store().expunge(folder.account, folder.name)
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
    store = session.ctx.mailbox_store()
    gone = await store.expunge(folder.account, folder.name, uids)
    folder.tell_expunged(session, sorted(gone))  # our own: at once (RFC 9051 6.4.3)
    if session.qresync:  # RFC 7162 3.2.7: the tagged OK carries the mailbox's HIGHESTMODSEQ
        _, row = await store.row(folder.account, folder.name)
        return ok("EXPUNGE completed", f"HIGHESTMODSEQ {row.highestmodseq}")
    return ok("EXPUNGE completed")


HANDLERS: dict[type, Any] = {
    c.Select: select,
    c.Examine: select,
    c.Close: close,
    c.Unselect: close,
    c.Expunge: expunge,
}
