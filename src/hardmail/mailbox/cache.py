"""The process's cache of folder snapshots: the last message list read for a folder, with the
HIGHESTMODSEQ it was read at. Every change to a folder's messages gets a new MODSEQ (new and
changed messages carry it, expunged ones leave a tombstone with it), so a cached list is brought
up to date with one indexed query for what changed after that MODSEQ, instead of reading every
message again: a 100,000-message SELECT costs one full read per process, then little.
Bounded by the number of messages held (least recently used folders are dropped first).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence

from hardmail.store.ports_mailbox import MessageRecord

MAX_CACHED_MESSAGES = 1_000_000


class SnapshotCache:
    def __init__(self, max_messages: int = MAX_CACHED_MESSAGES) -> None:
        self._max = max_messages
        self._held = 0
        self._entries: OrderedDict[int, tuple[int, list[MessageRecord]]] = OrderedDict()

    def get(self, folder_id: int) -> tuple[int, list[MessageRecord]] | None:
        found = self._entries.get(folder_id)
        if found is not None:
            self._entries.move_to_end(folder_id)
        return found

    def put(self, folder_id: int, modseq: int, messages: list[MessageRecord]) -> None:
        self.drop(folder_id)
        if len(messages) > self._max:
            return
        self._entries[folder_id] = (modseq, messages)
        self._held += len(messages)
        while self._held > self._max:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._held -= len(dropped)

    def drop(self, folder_id: int) -> None:
        old = self._entries.pop(folder_id, None)
        if old is not None:
            self._held -= len(old[1])


def patched(messages: list[MessageRecord], changed: Sequence[MessageRecord],
            vanished: Sequence[int]) -> list[MessageRecord]:
    """``messages`` (UID order) with ``changed`` (UID order) put in and ``vanished`` taken out; linear."""
    if not changed and not vanished:
        return messages
    if not vanished and (not messages or changed[0].uid > messages[-1].uid):
        return messages + list(changed)  # only new messages: the usual case
    gone = set(vanished) | {m.uid for m in changed}
    kept = [m for m in messages if m.uid not in gone]
    return list(heapq.merge(kept, changed, key=lambda m: m.uid))
