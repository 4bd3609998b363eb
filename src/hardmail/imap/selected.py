"""The selected mailbox as one session sees it (RFC 9051 2.3.1.2, 7.4.1, 7.5.1; RFC 7162 3.1.4.x,
3.2.10): the message-number ↔ UID map and the untagged updates that bring the client up to date.

Pure: the session builds a :class:`SelectedView` from the folder's messages at SELECT and hands it
every later state (a full snapshot or the changes since a MODSEQ); the view answers with the
untagged lines to send. RFC 9051 7.5.1 forbids EXPUNGE while a FETCH, STORE or SEARCH (not their UID
forms) runs: then expunged messages stay in the view, keep their numbers, and are announced at the
next command that allows it.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.encode import encode_value, flags, vanished_response
from hardmail.proto.imap.sequence import SequenceSet


class MessageLike(Protocol):
    @property
    def uid(self) -> int: ...
    @property
    def modseq(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Known:
    """What the client was last told about one message."""

    uid: int
    modseq: int
    flags: frozenset[str]


def _frozen(flags: Iterable[str]) -> frozenset[str]:
    return flags if isinstance(flags, frozenset) else frozenset(flags)


def expunge_allowed(command: c.Command | None) -> bool:
    """RFC 9051 7.5.1: no EXPUNGE during FETCH, STORE or SEARCH; their UID forms allow it (the
    client does not depend on message numbers then). ``None`` is "between commands" (IDLE, NOOP)."""
    if isinstance(command, c.Fetch | c.Store | c.Search | c.Sort | c.Thread):
        return command.uid
    return True


class SelectedView:
    """One session's view of its selected folder."""

    def __init__(self, messages: Iterable[MessageLike], *, condstore: bool = False, qresync: bool = False,
                 recent: Iterable[int] = (), rev1: bool = True) -> None:
        self.condstore = condstore or qresync
        self.qresync = qresync
        self.rev1 = rev1  # send * n RECENT (RFC 3501 7.3.2); IMAP4rev2 has no \Recent
        items = list(messages)
        uids = [m.uid for m in items]
        if any(map(operator.gt, uids, itertools.islice(uids, 1, None))):
            items.sort(key=lambda m: m.uid)
            uids = [m.uid for m in items]
        flag_sets = [m.flags for m in items]
        if not set(map(type, flag_sets)) <= {frozenset}:
            flag_sets = [_frozen(f) for f in flag_sets]
        self._uids: list[int] = uids
        modseqs = [m.modseq for m in items]
        self._known: dict[int, tuple[int, frozenset[str]]] = dict(zip(uids, zip(modseqs, flag_sets, strict=True),
                                                                      strict=True))
        self._gone: set[int] = set()  # expunged in the folder, not yet announced
        known = self._known
        self.recent: set[int] = {uid for uid in recent if uid in known}

    # ----- the map --------------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self._uids)

    @property
    def uids(self) -> Sequence[int]:
        """UIDs in message-number order (index 0 is message 1)."""
        return self._uids

    def uid_of(self, seq: int) -> int:
        return self._uids[seq - 1]

    def seq_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self._uids, uid)
        return index + 1 if index < len(self._uids) and self._uids[index] == uid else None

    def known(self, uid: int) -> Known | None:
        entry = self._known.get(uid)
        return None if entry is None else Known(uid, entry[0], entry[1])

    def is_expunged(self, uid: int) -> bool:
        """In the view but gone from the folder (a deferred EXPUNGE, RFC 9051 7.5.1)."""
        return uid in self._gone

    @property
    def max_uid(self) -> int:
        return self._uids[-1] if self._uids else 0

    # ----- updates ---------------------------------------------------------------------------------
    def apply(self, update: object, *, allow_expunge: bool = True) -> list[bytes]:
        """The spec's single entry point: a FolderSnapshot-like value (``messages``, optional
        ``recent_uids``) or a Changes-like one (``changed``, ``vanished``)."""
        recent: Iterable[int] = getattr(update, "recent_uids", ())
        if hasattr(update, "changed") and hasattr(update, "vanished"):
            return self.apply_changes(update.changed, update.vanished, allow_expunge=allow_expunge, recent=recent)
        if hasattr(update, "messages"):
            return self.apply_snapshot(update.messages, allow_expunge=allow_expunge, recent=recent)
        raise TypeError(f"not a snapshot or changes: {type(update).__name__}")

    def apply_snapshot(self, messages: Iterable[MessageLike], *, allow_expunge: bool = True,
                       recent: Iterable[int] = ()) -> list[bytes]:
        """Bring the view to ``messages`` (the folder's whole current state, any order)."""
        current = {m.uid: m for m in messages}
        vanished = [uid for uid in self._uids if uid not in current]
        return self._update(list(current.values()), vanished, allow_expunge, set(recent))

    def apply_changes(self, changed: Iterable[MessageLike], vanished: Iterable[int], *,
                      allow_expunge: bool = True, recent: Iterable[int] = ()) -> list[bytes]:
        """Bring the view up to date from the changes since some MODSEQ (new and changed messages,
        expunged UIDs)."""
        expunged = set(vanished)
        gone = sorted(uid for uid in expunged if uid in self._known)
        live = [m for m in changed if m.uid not in expunged]  # arrived and expunged since: never shown
        return self._update(live, gone, allow_expunge, set(recent))

    def _update(self, records: list[MessageLike], vanished: list[int], allow_expunge: bool,
                recent: set[int]) -> list[bytes]:
        self._gone.update(vanished)
        out: list[bytes] = []
        if allow_expunge:
            out += self.flush_expunges()
        out += self._flag_changes(records)
        out += self._arrivals(records, recent)
        return out

    def flush_expunges(self) -> list[bytes]:
        """Announce every expunge held back: ``* n EXPUNGE`` or, under QRESYNC, ``* VANISHED``."""
        if not self._gone:
            return []
        gone = sorted(self._gone)
        self._gone.clear()
        recent_before = len(self.recent)
        out = self._expunge_lines(gone)
        if self.rev1 and len(self.recent) != recent_before:  # RFC 3501 7.3.2: the count changed
            out.append(b"* %d RECENT\r\n" % len(self.recent))
        return out

    def _expunge_lines(self, gone: list[int]) -> list[bytes]:
        if self.qresync:
            self._drop(gone)
            return [vanished_response(gone)]
        out = []
        for uid in gone:  # RFC 9051 7.5.1 example: ascending, each number as it is after the last
            seq = self.seq_of(uid)
            if seq is not None:
                out.append(b"* %d EXPUNGE\r\n" % seq)
                del self._uids[seq - 1]
        self._forget(gone)
        return out

    def _drop(self, gone: list[int]) -> None:
        wanted = set(gone)
        self._uids = [uid for uid in self._uids if uid not in wanted]
        self._forget(gone)

    def _forget(self, gone: list[int]) -> None:
        for uid in gone:
            self._known.pop(uid, None)
            self.recent.discard(uid)

    def _flag_changes(self, records: list[MessageLike]) -> list[bytes]:
        changed = []
        for msg in records:  # linear: a snapshot of a big folder mostly holds unchanged messages
            old = self._known.get(msg.uid)
            if old is None or msg.uid in self._gone:
                continue
            if msg.flags == old[1] and (not self.condstore or msg.modseq == old[0]):
                continue
            self._known[msg.uid] = (msg.modseq, _frozen(msg.flags))
            changed.append(msg.uid)
        out = []
        for uid in sorted(changed):
            seq = self.seq_of(uid)
            assert seq is not None
            out.append(self.flags_fetch(seq, uid))
        return out

    def _arrivals(self, records: list[MessageLike], recent: set[int]) -> list[bytes]:
        top = self.max_uid
        fresh = sorted((m for m in records if m.uid > top), key=lambda m: m.uid)
        if not fresh:
            return []
        for msg in fresh:
            self._uids.append(msg.uid)
            self._known[msg.uid] = (msg.modseq, _frozen(msg.flags))
        self.recent.update(uid for uid in recent if uid in self._known)
        out = [b"* %d EXISTS\r\n" % self.exists]
        if self.rev1:
            out.append(b"* %d RECENT\r\n" % len(self.recent))
        return out

    def flags_fetch(self, seq: int, uid: int) -> bytes:
        """``* n FETCH (FLAGS (...))`` with UID under QRESYNC (RFC 7162 3.2.4) and MODSEQ under CONDSTORE
        (RFC 7162 3.1.4.2); ``\\Recent`` added for rev1 sessions that hold the message as recent."""
        modseq, known_flags = self._known[uid]
        names = sorted(known_flags) + (["\\Recent"] if self.rev1 and uid in self.recent else [])
        parts = [b"FLAGS " + encode_value(flags(names))]
        if self.qresync:
            parts.insert(0, b"UID %d" % uid)
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % modseq)
        return b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n"

    def note(self, msg: MessageLike) -> None:
        """The session itself told the client about ``msg`` (its own STORE): no update later."""
        if msg.uid in self._known:
            self._known[msg.uid] = (msg.modseq, _frozen(msg.flags))

    def expunged_by_self(self, uids: Iterable[int]) -> list[bytes]:
        """The session's own EXPUNGE / UID EXPUNGE / MOVE removed ``uids``: announce them now
        (these commands always allow EXPUNGE responses)."""
        self._gone.update(uid for uid in uids if uid in self._known)
        return self.flush_expunges()

    def highest_known_modseq(self) -> int:
        return max((modseq for modseq, _ in self._known.values()), default=0)



def qresync_vanished(expunged_uids: Iterable[int], known: SequenceSet | None, max_uid: int) -> list[int]:
    """RFC 7162 3.2.5.2: of the UIDs expunged since the client's MODSEQ, those in its known-uids set
    (all of them when it sent none), for ``* VANISHED (EARLIER)``."""
    gone = sorted(set(expunged_uids))
    if known is None:
        return gone
    largest = max([max_uid, *gone])
    return [uid for uid in gone if known.contains(uid, largest)]
