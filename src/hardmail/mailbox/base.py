"""What every part of the mailbox store shares: where an account's and a folder's directories
are, the folder rows, the per-folder lock, the notifier, and turning index rows into the public
records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from hardmail.core.clock import Clock
from hardmail.delivery.maildir import MaildirStore, UniqueNames
from hardmail.mailbox import files, names
from hardmail.mailbox.cache import SnapshotCache
from hardmail.mailbox.notifier import ChangeNotifier
from hardmail.mailbox.types import Changes, FolderError, FolderInfo, QuotaExceeded
from hardmail.store.ports import NotFound
from hardmail.store.ports_mailbox import (
    ApplyResult,
    DirStamp,
    FolderChange,
    FolderRow,
    MailboxIndex,
    OverQuota,
)

NO_STAMP = DirStamp(0, 0)  # a folder the index has never scanned: the first sync reads it all


class MailboxBase:
    def __init__(self, maildir_root: Path, index: MailboxIndex, hostname: str, clock: Clock, *,
                 notifier: ChangeNotifier | None = None,
                 quota_defaults: tuple[int | None, int | None] = (None, None)) -> None:
        self.root = Path(maildir_root)
        self.index = index
        self.clock = clock
        self.notifier = notifier
        self.quota_defaults = quota_defaults
        self.names = UniqueNames(hostname)
        self._maildirs = MaildirStore(self.root, hostname)
        self.snapshots = SnapshotCache()
        self._reading: dict[tuple[str, str, int, int], asyncio.Future[Changes]] = {}  # shared reads
        self._locks: weakref.WeakValueDictionary[Path, asyncio.Lock] = weakref.WeakValueDictionary()

    # places

    def account_dir(self, account: str) -> Path:
        try:
            return self._maildirs.mailbox_path(account)
        except ValueError:
            raise FolderError("no such account") from None

    def folder_dir(self, account: str, name: str) -> Path:
        return self.account_dir(account) / names.dirname(name)

    # rows

    async def row(self, account: str, name: str) -> tuple[str, FolderRow]:
        """(canonical name, row); INBOX is indexed on first use; FolderError "no such folder"."""
        canonical = names.normalize(name)
        found = await self.index.get_folder(account, canonical)
        if found is None and canonical == names.INBOX:
            found = await self.new_folder(account, canonical, None)
        if found is None:
            raise FolderError("no such folder")
        return canonical, found

    async def new_folder(self, account: str, name: str, special_use: str | None, *,
                         uidvalidity: int | None = None) -> FolderRow:
        """Create the directories (if missing) and the index row; None-safe against a race.
        ``uidvalidity``: a restore re-creating the folder with its archived UIDs asks for the
        archived value (given unless another folder of the account holds it)."""
        directory = self.folder_dir(account, name)
        await asyncio.to_thread(files.ensure_folder, directory)
        try:
            if uidvalidity is not None:
                return await self.index.create_folder(account, name, special_use, uidvalidity, NO_STAMP,
                                                      reuse_uidvalidity=True)
            return await self.index.create_folder(account, name, special_use, int(self.clock.now()), NO_STAMP)
        except Exception as exc:
            found = await self.index.get_folder(account, name)
            if found is None:
                raise
            if name != names.INBOX:
                raise FolderError("folder exists") from exc
            return found

    def info(self, row: FolderRow, subscribed: set[str], all_names: Sequence[str]) -> FolderInfo:
        prefix = row.name + names.DELIMITER
        return FolderInfo(
            name=row.name, special_use=row.special_use, subscribed=row.name in subscribed,
            uidvalidity=row.uidvalidity, uidnext=row.uidnext, highestmodseq=row.highestmodseq,
            messages=row.messages, unseen=row.unseen, size=row.size, deleted=row.deleted,
            has_children=any(other.startswith(prefix) for other in all_names),
        )

    async def info_of(self, row: FolderRow) -> FolderInfo:
        subscribed = set(await self.index.subscriptions(row.account))
        all_names = [r.name for r in await self.index.list_folders(row.account)]
        return self.info(row, subscribed, all_names)

    # locking, applying, notifying

    @contextlib.asynccontextmanager
    async def locked(self, *directories: Path) -> AsyncIterator[None]:
        """Hold the folders' locks (this process's asyncio lock, then the flock), in path order."""
        async with contextlib.AsyncExitStack() as stack:
            for directory in sorted(set(directories)):
                lock = self._locks.get(directory)
                if lock is None:
                    lock = self._locks[directory] = asyncio.Lock()
                await stack.enter_async_context(lock)
                try:
                    fd = await asyncio.to_thread(files.lock_folder, directory)
                except FileNotFoundError:  # deleted meanwhile (or behind our back: a sync recreates it)
                    raise FolderError("no such folder") from None
                stack.callback(os.close, fd)
            yield

    async def apply(self, account: str, changes: Sequence[tuple[FolderRow, FolderChange]]) -> list[ApplyResult]:
        try:
            results = await self.index.apply([(row.id, change) for row, change in changes], self.quota_defaults)
        except OverQuota:
            raise QuotaExceeded("quota exceeded") from None
        except NotFound:
            raise FolderError("no such folder") from None
        for result in results:
            if result.changed:
                self.notify(account, result.folder.name)
        return results

    def notify(self, account: str, name: str) -> None:
        if self.notifier is not None:
            self.notifier.notify_local(account, name)
