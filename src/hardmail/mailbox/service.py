"""``MailboxStore``: the mailbox store's use-cases (folders, messages, flags, quota, re-indexing)
over Maildir++ files (:mod:`hardmail.mailbox.files`) and the SQL index (``Store.mailbox``).

Durability and crash order (a ``kill -9`` at any point; the files are the truth, the index
follows; every step is fsync'd before the next):

- append: write ``tmp/``, fsync, rename into ``cur/``, fsync ``cur/``, then commit the index. A
  crash before the commit leaves a file without an entry; the directory's mtime no longer matches
  the one in the index, so the next sync (or ``reconcile_all`` at start-up) indexes it.
- flag change: rename ``cur/X:2,OLD`` → ``cur/X:2,NEW``, fsync, commit. A crash in between leaves
  an entry whose flags differ from the file; the index keys messages by base name ``X``, so the
  next sync takes the flags from the file (the client never had an OK for them).
- expunge: unlink, fsync the directory, then commit the removal (and the tombstone). A crash in
  between leaves an entry without a file, which the next sync removes. (The other order could
  leave a file without an entry, which would come back as a new message.)
- move: rename into the destination's ``cur/`` (the base name is unique, it is kept), fsync both,
  then commit both folders in one transaction; copy: hard links, fsync, commit.

Own changes record cur/'s new mtime in the same commit only when the index still held the mtime
seen just before the change (compare-and-set, each directory on its own), so a change made behind
our back is not hidden by ours; new/'s mtime is only ever recorded by a scan, since local delivery
writes there without the folder lock. A scan of a directory changed less than 2 s before is repeated at the next sync
(a same-tick change would not move its mtime), as Dovecot does.

Every file change in a folder is made holding the folder's lock (an asyncio lock, then an
``flock`` on ``<folder>/hardmail.lock``, released by the kernel if the process dies), so two
hardmail processes never interleave their changes in one folder. Local delivery writes to
``new/`` without the lock and indexes the files afterwards (:meth:`deliver_indexed`); a sync that
sees them first indexes them by name, and delivery then finds their UIDs. The residual window: a
change by another program within the same directory-timestamp tick as one of our own changes is
seen at the next change it makes, or the next re-index.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from hardmail.mailbox import files, names
from hardmail.mailbox.cache import patched
from hardmail.mailbox.flags import apply_mode, clean_flags, has_keywords, spell_like
from hardmail.mailbox.folders import SPECIAL_USE_DEFAULTS, FolderOps, is_trash_dir
from hardmail.mailbox.types import (
    AppendResult,
    Changes,
    CopyResult,
    FolderError,
    FolderSnapshot,
    Quota,
    QuotaExceeded,
    ReindexReport,
    RestoredMessage,
    StoreResult,
)
from hardmail.mime.structure import crlf
from hardmail.store.ports import NotFound
from hardmail.store.ports_mailbox import FlagUpdate, FolderChange, FolderRow, MessageRecord, NewMessage

StoreMode = Literal["add", "remove", "set"]
__all__ = ["SPECIAL_USE_DEFAULTS", "MailboxStore", "StoreMode"]


class MailboxStore(FolderOps):
    """One per process: ``MailboxStore(maildir_root, index, hostname, clock, notifier=...,
    quota_defaults=(storage bytes, messages))``; a default of None is unlimited."""

    async def ensure_account(self, account: str) -> None:
        """INBOX and the special-use folders (subscribed) exist; folder directories already on
        disk (an existing Maildir, mail delivered before the index existed) are indexed too."""
        await super().ensure_account(account)
        await self._adopt_directories(account)

    # reading

    async def sync(self, account: str, name: str, *, claim_recent: bool = True) -> FolderSnapshot:
        _canonical, row = await self.row(account, name)
        row, _ = await self._sync_row(account, row, full=False)
        return await self._snapshot(row, claim_recent)

    async def snapshot(self, account: str, name: str, *, claim_recent: bool = False) -> FolderSnapshot:
        _canonical, row = await self.row(account, name)
        return await self._snapshot(row, claim_recent)

    async def _snapshot(self, row: FolderRow, claim_recent: bool) -> FolderSnapshot:
        """With ``claim_recent`` the \\Recent messages become this caller's (RFC 3501 2.3.2); without,
        ``recent_uids`` are those no session claimed yet (EXAMINE, STATUS RECENT)."""
        first = upto = 0
        if claim_recent:
            first, upto = await self.index.claim_recent(row.id)
        current, messages = await self._messages(row.id)
        if not claim_recent:
            first, upto = current.first_recent_uid, current.uidnext
        recent = []
        for message in reversed(messages):
            if message.uid < first:
                break
            if message.uid < upto:
                recent.append(message.uid)
        return FolderSnapshot(await self.info_of(current), messages, frozenset(recent))

    async def claim_recent(self, account: str, name: str) -> tuple[int, int]:
        """RFC 3501 2.3.2: the UIDs in [first, upto) are \\Recent for this caller only."""
        _canonical, row = await self.row(account, name)
        return await self.index.claim_recent(row.id)

    async def _messages(self, folder_id: int) -> tuple[FolderRow, list[MessageRecord]]:
        """The folder's messages: the cached list brought up to date, or all of them read once."""
        cached = self.snapshots.get(folder_id)
        if cached is None:
            found = await self.index.snapshot(folder_id)
            if found is None:
                raise FolderError("no such folder")
            current, messages = found
        else:
            since = await self.index.snapshot_since(folder_id, cached[0])
            if since is None:
                self.snapshots.drop(folder_id)
                raise FolderError("no such folder")
            current, changed, vanished = since
            messages = patched(cached[1], changed, vanished)
        self.snapshots.put(folder_id, current.highestmodseq, messages)
        return current, list(messages)  # the cached list itself is never handed out

    async def _sync_row(self, account: str, row: FolderRow, full: bool) -> tuple[FolderRow, files.ScanResult | None]:
        directory = self.folder_dir(account, row.name)
        try:
            current = await asyncio.to_thread(files.stamp, directory)
        except FileNotFoundError:  # removed behind our back: an empty folder again (unless deleted by us)
            if await self.index.get_folder(account, row.name) is None:
                raise FolderError("no such folder") from None
            await asyncio.to_thread(files.ensure_folder, directory)
            current, full = None, True
        if current == row.stamp and not full:
            return row, None
        async with self.locked(directory):
            fresh = await self.index.get_folder(account, row.name)
            if fresh is None:
                raise FolderError("no such folder")
            partial = not full and current is not None and current.cur_mtime_ns == fresh.stamp.cur_mtime_ns
            entries = await self.index.sync_entries(fresh.id, only_in_new=partial)
            try:
                result = await asyncio.to_thread(files.scan_folder, directory, fresh.stamp, entries,
                                                 full=full, partial=partial)
            except files.NeedAllEntries:
                entries = await self.index.sync_entries(fresh.id)
                result = await asyncio.to_thread(files.scan_folder, directory, fresh.stamp, entries, full=full)
            if result is None:
                return fresh, None
            [applied] = await self.apply(account, [(fresh, result.change)])
            return applied.folder, result

    async def changes_since(self, account: str, name: str, modseq: int) -> Changes:
        """Concurrent calls for the same folder and MODSEQ (every IDLE session woken by one delivery)
        share one look at the index, unless a change was announced after that look began."""
        canonical = names.normalize(name)
        generation = None if self.notifier is None else self.notifier.generation(account, canonical)
        if generation is None:
            return await self._changes_since(account, canonical, modseq)
        key = (account, canonical, modseq, generation)
        task = self._reading.get(key)
        if task is None:
            task = self._reading[key] = asyncio.ensure_future(self._changes_since(account, canonical, modseq))
            task.add_done_callback(lambda done: self._read_done(key, done))
        found = await asyncio.shield(task)
        return Changes(found.highestmodseq, list(found.changed), list(found.vanished))

    def _read_done(self, key: tuple[str, str, int, int], done: asyncio.Future[Changes]) -> None:
        self._reading.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved, also when every caller was cancelled meanwhile

    async def _changes_since(self, account: str, name: str, modseq: int) -> Changes:
        _canonical, row = await self.row(account, name)
        changed, vanished = await self.index.changes_since(row.id, modseq)
        highest = max([row.highestmodseq] + [m.modseq for m in changed])
        return Changes(highest, changed, vanished)

    async def message_path(self, account: str, name: str, uid: int) -> Path | None:
        canonical, row = await self.row(account, name)
        entries = await self.index.sync_entries(row.id, [uid])
        if not entries:
            return None
        entry, directory = entries[0], self.folder_dir(account, canonical)
        return await asyncio.to_thread(files.find_file, directory, entry.name, entry.flags, entry.in_new)

    async def message_paths(self, account: str, name: str, uids: Sequence[int]) -> dict[int, Path]:
        """The current files of many messages at once (one index query, one thread); the UIDs of
        messages that are gone are left out."""
        canonical, row = await self.row(account, name)
        entries = await self.index.sync_entries(row.id, uids)
        directory = self.folder_dir(account, canonical)

        def locate() -> dict[int, Path]:
            found = {e.uid: files.find_file(directory, e.name, e.flags, e.in_new) for e in entries}
            return {uid: path for uid, path in found.items() if path is not None}

        return await asyncio.to_thread(locate)

    async def read_message(self, account: str, name: str, uid: int) -> bytes | None:
        for _attempt in range(3):  # a flag change may rename the file between finding and reading it
            path = await self.message_path(account, name, uid)
            if path is None:
                return None
            try:
                return await asyncio.to_thread(_read_crlf, path)
            except FileNotFoundError:
                continue
        return None

    # writing

    async def append(self, account: str, name: str, message: bytes, flags: Iterable[str] = (),
                     internaldate: datetime | None = None) -> AppendResult:
        canonical, row = await self.row(account, name)
        await self._refuse_over_quota(account, len(message), 1)
        directory, wanted = self.folder_dir(account, canonical), clean_flags(flags)
        async with self.locked(directory):
            wanted = await self._spelled(row.id, wanted)
            before = await asyncio.to_thread(files.stamp, directory)
            new = await asyncio.to_thread(files.write_message, directory, self.names, message, wanted, internaldate)
            try:
                after = await asyncio.to_thread(files.stamp, directory)
                change = FolderChange(added=[new], stamp_before=before, check_quota=True,
                                      stamp_after=files.own_stamp(before, after, touched_new=False))
                [result] = await self.apply(account, [(row, change)])
            except BaseException:
                await asyncio.to_thread(files.remove_new, directory, [new])
                raise
        return AppendResult(result.folder.uidvalidity, result.uids[0])

    async def append_restored(self, account: str, name: str, messages: Sequence[RestoredMessage], *,
                              uidnext_at_least: int = 0, modseq_at_least: int = 0) -> list[int]:
        """A restore's APPEND of several messages in one commit; each file is written as
        :meth:`append` writes it (tmp/, fsync, cur/, fsync cur/) with its flags and INTERNALDATE.
        The quota is not checked (an admin restores on purpose); a message's ``uid`` is kept when
        it is at or above UIDNEXT (RFC 9051 2.3.1.1), else it gets a new one; UIDNEXT and the MODSEQ
        are raised to the floors given. Returns the UIDs given, in order."""
        canonical, row = await self.row(account, name)
        directory = self.folder_dir(account, canonical)
        async with self.locked(directory):
            known = await self._keywords(row.id, messages)
            before = await asyncio.to_thread(files.stamp, directory)
            written: list[NewMessage] = []
            try:
                for message in messages:
                    flags = spell_like(clean_flags(message.flags), known)
                    new = await asyncio.to_thread(files.write_message, directory, self.names, message.data, flags,
                                                  message.internaldate)
                    written.append(dataclasses.replace(new, size=_crlf_size(message.data), uid=message.uid))
                after = await asyncio.to_thread(files.stamp, directory)
                change = FolderChange(added=written, stamp_before=before, uidnext_at_least=uidnext_at_least,
                                      modseq_at_least=modseq_at_least,
                                      stamp_after=files.own_stamp(before, after, touched_new=False))
                [result] = await self.apply(account, [(row, change)])
            except BaseException:
                await asyncio.to_thread(files.remove_new, directory, written)
                raise
        return result.uids

    async def _keywords(self, folder_id: int, messages: Sequence[RestoredMessage]) -> list[str]:
        """The keywords already used in the folder, when ``messages`` have any (their spelling wins)."""
        if not any(has_keywords(message.flags) for message in messages):
            return []
        entries = await self.index.sync_entries(folder_id)
        return [flag for e in entries for flag in e.flags if not flag.startswith("\\")]

    async def _spelled(self, folder_id: int, flags: frozenset[str]) -> frozenset[str]:
        """Keywords in the spelling already used in the folder (RFC 9051 2.3.2: case-insensitive)."""
        if not has_keywords(flags):
            return flags
        entries = await self.index.sync_entries(folder_id)
        return spell_like(flags, (flag for e in entries for flag in e.flags if not flag.startswith("\\")))

    async def _refuse_over_quota(self, account: str, size: int, count: int) -> None:
        """An early, cheap refusal (the authoritative check is in the commit)."""
        quota = await self.quota(account)
        if (quota.storage_limit is not None and quota.storage_used + size > quota.storage_limit) or (
                quota.messages_limit is not None and quota.messages_used + count > quota.messages_limit):
            raise QuotaExceeded("quota exceeded")

    async def store_flags(self, account: str, name: str, uids: Sequence[int], mode: StoreMode,
                          flags: Iterable[str], unchanged_since: int | None = None) -> StoreResult:
        canonical, row = await self.row(account, name)
        directory, given = self.folder_dir(account, canonical), clean_flags(flags)
        async with self.locked(directory):
            given = await self._spelled(row.id, given)
            entries = await self.index.sync_entries(row.id, uids)
            failed = [e.uid for e in entries if unchanged_since is not None and e.modseq > unchanged_since]
            refused = set(failed)
            todo = {e.uid: new for e in entries if e.uid not in refused
                    and (new := apply_mode(e.flags, mode, given)) != e.flags}
            if not todo:
                return StoreResult([], failed)
            renames = [e for e in entries if e.uid in todo and files.system(todo[e.uid]) != files.system(e.flags)]
            before = await asyncio.to_thread(files.stamp, directory)
            missing = await asyncio.to_thread(files.rename_flags, directory, renames, todo)
            after = await asyncio.to_thread(files.stamp, directory)
            renamed = {e.uid for e in renames} - set(missing)
            updates = [FlagUpdate(uid, new, False if uid in renamed else None)
                       for uid, new in todo.items() if uid not in missing]
            touched_new = any(e.in_new for e in renames)
            [result] = await self.apply(account, [(row, FolderChange(
                updated=updates, stamp_before=before, stamp_after=files.own_stamp(before, after, touched_new)))])
        changed, _ = await self.index.changes_since(row.id, result.modseq - 1)
        return StoreResult([m for m in changed if m.uid in todo and m.modseq == result.modseq], failed)

    async def expunge(self, account: str, name: str, uids: Sequence[int] | None = None) -> list[int]:
        canonical, row = await self.row(account, name)
        if row.deleted == 0 and uids is None:
            return []
        directory = self.folder_dir(account, canonical)
        async with self.locked(directory):
            entries = await self.index.sync_entries(row.id, uids, only_deleted=True)
            doomed = [e for e in entries if "\\Deleted" in e.flags]
            if not doomed:
                return []
            before = await asyncio.to_thread(files.stamp, directory)
            await asyncio.to_thread(files.unlink_messages, directory, doomed)
            after = await asyncio.to_thread(files.stamp, directory)
            change = FolderChange(removed=[e.uid for e in doomed], stamp_before=before,
                                  stamp_after=files.own_stamp(before, after, any(e.in_new for e in doomed)))
            await self.apply(account, [(row, change)])
        return sorted(e.uid for e in doomed)

    async def copy(self, account: str, src: str, uids: Sequence[int], dest: str) -> CopyResult:
        return await self._transfer(account, src, uids, dest, move=False)

    async def move(self, account: str, src: str, uids: Sequence[int], dest: str) -> CopyResult:
        return await self._transfer(account, src, uids, dest, move=True)

    async def _transfer(self, account: str, src: str, uids: Sequence[int], dest: str, move: bool) -> CopyResult:
        src_name, src_row = await self.row(account, src)
        dest_name, dest_row = await self.row(account, dest)
        if move and src_row.id == dest_row.id:
            copied = await self._transfer(account, src, uids, dest, move=False)
            await self._remove(account, src_row, [old for old, _ in copied.pairs])
            return copied
        src_dir, dest_dir = self.folder_dir(account, src_name), self.folder_dir(account, dest_name)
        async with self.locked(src_dir, dest_dir):
            entries = await self.index.sync_entries(src_row.id, uids)
            if not move:
                await self._refuse_over_quota(account, sum(e.size for e in entries), len(entries))
            src_before, dest_before = await asyncio.to_thread(files.stamps, src_dir, dest_dir)
            done = await asyncio.to_thread(files.link_messages, src_dir, dest_dir, entries, self.names, move)
            src_after, dest_after = await asyncio.to_thread(files.stamps, src_dir, dest_dir)
            changes = [(dest_row, FolderChange(added=[m for _, m in done], stamp_before=dest_before,
                                               stamp_after=files.own_stamp(dest_before, dest_after, False),
                                               check_quota=not move))]
            if move:
                changes.append((src_row, FolderChange(removed=[uid for uid, _ in done], stamp_before=src_before,
                                                      stamp_after=files.own_stamp(
                                                          src_before, src_after, any(e.in_new for e in entries)))))
            try:
                results = await self.apply(account, changes)
            except QuotaExceeded:
                await asyncio.to_thread(files.remove_new, dest_dir, [m for _, m in done])
                raise
        return CopyResult(results[0].folder.uidvalidity, list(zip([uid for uid, _ in done], results[0].uids,
                                                                  strict=True)))

    async def _remove(self, account: str, row: FolderRow, uids: Sequence[int]) -> None:
        directory = self.folder_dir(account, row.name)
        async with self.locked(directory):
            entries = await self.index.sync_entries(row.id, uids)
            before = await asyncio.to_thread(files.stamp, directory)
            await asyncio.to_thread(files.unlink_messages, directory, entries)
            after = await asyncio.to_thread(files.stamp, directory)
            touched_new = any(e.in_new for e in entries)
            await self.apply(account, [(row, FolderChange(removed=[e.uid for e in entries], stamp_before=before,
                                                          stamp_after=files.own_stamp(before, after, touched_new)))])

    async def deliver_indexed(self, account: str, folder: str, paths: Sequence[Path]) -> list[int]:
        canonical = names.normalize(folder)
        row = await self.index.get_folder(account, canonical)
        if row is None:
            special = dict(SPECIAL_USE_DEFAULTS).get(canonical)
            try:
                row = await self.new_folder(account, canonical, special)
            except FolderError:
                _canonical, row = await self.row(account, canonical)
        directory = self.folder_dir(account, canonical)
        found = await asyncio.to_thread(files.delivered_messages, directory, paths)
        [result] = await self.apply(account, [(row, FolderChange(added=[m for m in found if m is not None]))])
        given = iter(result.uids)
        return [0 if message is None else next(given) for message in found]

    # quota and maintenance

    async def quota(self, account: str) -> Quota:
        usage = await self.index.usage(account)
        storage, messages = ((usage.storage_limit, usage.messages_limit) if usage.custom_limits
                             else self.quota_defaults)
        return Quota(usage.storage_used, storage, usage.messages_used, messages)

    async def set_quota(self, account: str, storage_bytes: int | None, messages: int | None) -> None:
        if (storage_bytes is not None and storage_bytes < 0) or (messages is not None and messages < 0):
            raise FolderError("a quota cannot be negative")
        await self.index.set_limits(account, storage_bytes, messages)

    async def reset_quota(self, account: str) -> None:
        """The account follows the server's default limits again."""
        await self.index.set_limits(account, None, None, custom=False)

    async def reindex(self, account: str, name: str | None = None) -> ReindexReport:
        if name is not None:
            rows = [(await self.row(account, name))[1]]
        else:
            await self._adopt_directories(account)
            rows = await self.index.list_folders(account)
        report = ReindexReport(folders=len(rows))
        for row in rows:
            _, result = await self._sync_row(account, row, full=True)
            await self.index.recount_folder(row.id)
            if result is not None:
                report = ReindexReport(report.folders, report.added + result.added,
                                       report.removed + result.removed, report.renamed + result.renamed)
        await self.index.recount_usage(account)
        return report

    async def _adopt_directories(self, account: str) -> None:
        """Index folder directories made behind our back; remove trash left by a crashed delete."""
        directory = self.account_dir(account)
        entries = await asyncio.to_thread(files.list_entries, directory)
        known = {row.name for row in await self.index.list_folders(account)}
        for entry in entries:
            if is_trash_dir(entry):
                await asyncio.to_thread(files.remove_tree, directory / entry)
                continue
            name = names.name_of_dirname(entry)
            if name is not None and name not in known:
                try:
                    await self.new_folder(account, name, None)
                except FolderError:
                    continue

    async def reconcile_all(self) -> int:
        synced, after, seen = 0, 0, set()
        while batch := await self.index.all_folders(after):
            for row in batch:
                after = row.id
                if row.account not in seen:
                    seen.add(row.account)
                    await self._adopt_directories(row.account)
                synced += await self._reconcile(row)
        return synced

    async def _reconcile(self, row: FolderRow) -> int:
        directory = self.folder_dir(row.account, row.name)
        await asyncio.to_thread(files.clean_tmp, directory, self.clock.now())
        if not await asyncio.to_thread(directory.is_dir):
            if row.name != names.INBOX and await asyncio.to_thread(self.account_dir(row.account).is_dir):
                with contextlib.suppress(NotFound):  # a delete or rename that crashed before its commit
                    await self.index.delete_folder(row.id)
                return 1
            return 0
        _, result = await self._sync_row(row.account, row, full=False)
        return int(result is not None)


def _crlf_size(data: bytes) -> int:
    """The size of ``data`` as served: every bare LF counted as CRLF (RFC 9051 2.2)."""
    return len(data) + data.count(b"\n") - data.count(b"\r\n")


def _read_crlf(path: Path) -> bytes:
    """A message file as served: bare LF line ends made CRLF (RFC 9051 2.2; sizes are computed on
    this form, see files.new_message)."""
    return crlf(path.read_bytes())
