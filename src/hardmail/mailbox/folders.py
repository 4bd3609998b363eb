"""Folder management of the mailbox store: the account's default folders, create, delete,
rename, subscriptions and listing (``MailboxStore`` inherits these).

Deleting renames the folder's directory to ``..DELETED-<random>`` first (no longer a folder name),
then removes the index rows, then the files; a crash in between leaves an index row without a
directory, which ``reconcile_all`` drops, and a trash directory, which it removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from pathlib import Path

from hardmail.delivery.durable import fsync_dir
from hardmail.mailbox import names
from hardmail.mailbox.base import MailboxBase
from hardmail.mailbox.types import FolderError, FolderInfo
from hardmail.store.ports import AlreadyExists, NotFound

SPECIAL_USE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
SPECIAL_USES = frozenset(use for _, use in SPECIAL_USE_DEFAULTS)  # RFC 6154 2 (virtual ones left out)
_SPECIAL_USE_NAMES = {use.lower(): use for use in SPECIAL_USES}
TRASH_PREFIX = "..DELETED-"


class FolderOps(MailboxBase):
    async def ensure_account(self, account: str) -> None:
        known = {row.name for row in await self.index.list_folders(account)}  # one query when all is there
        if names.INBOX not in known:
            await self.row(account, names.INBOX)
            await self.index.set_subscribed(account, names.INBOX, True)
        for name, special_use in SPECIAL_USE_DEFAULTS:
            if name not in known:
                try:
                    await self.new_folder(account, name, special_use)
                except FolderError:
                    continue  # made by a concurrent call
                await self.index.set_subscribed(account, name, True)

    async def list_folders(self, account: str) -> list[FolderInfo]:
        await self.row(account, names.INBOX)
        rows = await self.index.list_folders(account)
        subscribed = set(await self.index.subscriptions(account))
        all_names = [row.name for row in rows]
        rows.sort(key=lambda row: (row.name != names.INBOX, row.name))
        return [self.info(row, subscribed, all_names) for row in rows]

    async def folder(self, account: str, name: str) -> FolderInfo | None:
        try:
            _canonical, row = await self.row(account, name)
        except FolderError:
            return None
        return await self.info_of(row)

    async def create_folder(self, account: str, name: str, special_use: str | None = None) -> FolderInfo:
        canonical = names.normalize(name)
        if canonical == names.INBOX:
            raise FolderError("folder exists")
        use = None if special_use is None else _SPECIAL_USE_NAMES.get(special_use.lower())
        if special_use is not None and use is None:
            raise FolderError("special use not supported")  # RFC 6154 5.3 USEATTR
        for parent in names.parent_names(canonical):
            if parent != names.INBOX and await self.index.get_folder(account, parent) is None:
                with contextlib.suppress(FolderError):  # a concurrent CREATE made it
                    await self.new_folder(account, parent, None)
        row = await self.new_folder(account, canonical, use)
        return await self.info_of(row)

    async def delete_folder(self, account: str, name: str) -> None:
        canonical, row = await self.row(account, name)
        if canonical == names.INBOX:
            raise FolderError("INBOX cannot be deleted")
        if any(other.name.startswith(canonical + names.DELIMITER) for other in await self.index.list_folders(account)):
            raise FolderError("folder has children, delete them first")  # as Dovecot
        directory = self.folder_dir(account, canonical)
        trash = self.account_dir(account) / f"{TRASH_PREFIX}{secrets.token_hex(8)}"
        async with self.locked(directory):
            await asyncio.to_thread(_rename_dir, directory, trash)
            with contextlib.suppress(NotFound):  # deleted concurrently
                await self.index.delete_folder(row.id)
        await asyncio.to_thread(shutil.rmtree, trash, True)
        self.notify(account, canonical)

    async def rename_folder(self, account: str, old: str, new: str) -> None:
        source, _row = await self.row(account, old)
        target = names.normalize(new)
        if target == names.INBOX or await self.index.get_folder(account, target) is not None:
            raise FolderError("folder exists")
        if target.startswith(source + names.DELIMITER):
            raise FolderError("cannot rename a folder into itself")
        if source == names.INBOX:
            await self._rename_inbox(account, target)
            return
        children = [r.name for r in await self.index.list_folders(account)
                    if r.name.startswith(source + names.DELIMITER)]
        renames = [(source, target)] + [(child, target + child[len(source):]) for child in children]
        for _, new_name in renames:
            names.normalize(new_name)  # each child's new name must be valid too
        await self._move_directories(account, renames)
        for parent in names.parent_names(target):
            if parent != names.INBOX and await self.index.get_folder(account, parent) is None:
                await self.new_folder(account, parent, None)
        for old_name, new_name in renames:
            self.notify(account, old_name)
            self.notify(account, new_name)

    async def _move_directories(self, account: str, renames: list[tuple[str, str]]) -> None:
        dirs = [(self.folder_dir(account, a), self.folder_dir(account, b)) for a, b in renames]
        async with self.locked(*[a for a, _ in dirs]):
            if await asyncio.to_thread(lambda: any(os.path.lexists(b) for _, b in dirs)):
                raise FolderError("folder exists")
            for a, b in dirs:
                await asyncio.to_thread(_rename_dir, a, b)
            try:
                await self.index.rename_folders(account, renames)
            except (AlreadyExists, NotFound) as exc:
                for a, b in reversed(dirs):
                    await asyncio.to_thread(_rename_dir, b, a)
                raise FolderError("folder exists" if isinstance(exc, AlreadyExists) else "no such folder") from None

    async def _rename_inbox(self, account: str, target: str) -> None:
        """RFC 9051 6.3.6: renaming INBOX moves its messages to a new folder; INBOX stays, empty."""
        await self.create_folder(account, target)
        entries = await self.index.sync_entries((await self.row(account, names.INBOX))[1].id)
        if entries:
            await self.move(account, names.INBOX, [entry.uid for entry in entries], target)  # type: ignore[attr-defined]

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        await self.index.set_subscribed(account, names.normalize(name), subscribed)

    async def subscriptions(self, account: str) -> list[str]:
        return await self.index.subscriptions(account)


def _rename_dir(source: Path, target: Path) -> None:
    os.rename(source, target)
    fsync_dir(target.parent)


def is_trash_dir(entry: str) -> bool:
    return entry.startswith(TRASH_PREFIX)

