"""The admin use-cases of mailboxes (folders, quotas, re-indexing), shared by the CLI and the HTTP API.

Every use-case names an account that must exist in the store; its mailbox (INBOX and the
special-use folders) is set up on first use, as local delivery would do it. Refusals are
:class:`~hardmail.admin.service.AdminError` (what was wrong, what to do). Sizes typed by an admin
(``1G``, ``500M``, ``4096``) are read by :func:`parse_size` (binary units: 1K = 1024 bytes) and
shown by :func:`human_size`.
"""

from __future__ import annotations

import re

from hardmail.admin.service import AdminError
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.delivery.local_index import set_up_mailbox
from hardmail.mailbox import SPECIAL_USE_DEFAULTS, FolderError, FolderInfo, MailboxStore, Quota, ReindexReport
from hardmail.store.ports import Store

# RFC 6154 2: the special uses a folder may be created with (the virtual \All and \Flagged are not)
SPECIAL_USES = tuple(sorted(use for _, use in SPECIAL_USE_DEFAULTS))
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``1G`` → 1073741824, ``500M``, ``64k``, ``1.5G``, ``4096`` (bytes); raises ValueError."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (give bytes, or a number with K, M, G or T: 500M, 1G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def human_size(size: int) -> str:
    """``1536`` → ``1.5 KiB``; below 1 KiB in bytes (``512 B``); binary units up to TiB."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def special_use_arg(text: str) -> str:
    """``Sent``, ``\\Sent`` or ``\\\\sent`` → ``\\Sent``; raises AdminError for anything else."""
    wanted = text.strip().lstrip("\\").lower()
    for use in SPECIAL_USES:
        if use[1:].lower() == wanted:
            return use
    raise AdminError(f"{text!r} is not a special use", f"give one of {', '.join(SPECIAL_USES)} (RFC 6154)")


class MailboxService:
    def __init__(self, store: Store, mailboxes: MailboxStore) -> None:
        self._store = store
        self._mailboxes = mailboxes

    async def account(self, address: str, set_up: bool = True) -> str:
        """The account's address in lookup form; refuses an address that is not an account. With
        ``set_up``, its mailbox is set up when it was not yet (as its first delivery would)."""
        try:
            key = parse_address_arg(address).key
        except AddressError as exc:
            raise AdminError(f"invalid address {address!r}: {exc}",
                             "give an address such as alice@example.org") from None
        if await self._store.get_account(key) is None:
            raise AdminError(f"no account {key}", "`hardmail account list` shows the accounts")
        if set_up:
            await set_up_mailbox(self._mailboxes, key)
        return key

    async def list_folders(self, address: str) -> list[FolderInfo]:
        """Read only: an account whose mailbox was never set up has no folders yet."""
        key = await self.account(address, set_up=False)
        if not await self._store.mailbox.list_folders(key):  # asked of the index: nothing is made here
            return []
        return await self._mailboxes.list_folders(key)

    async def quota(self, address: str) -> Quota:
        """Read only."""
        return await self._mailboxes.quota(await self.account(address, set_up=False))

    async def set_quota(self, address: str, storage: int | None, messages: int | None) -> Quota:
        """Set the account's limits (None: unlimited); returns the quota as it is now."""
        key = await self.account(address)
        await self._mailboxes.set_quota(key, storage, messages)
        return await self._mailboxes.quota(key)

    async def create_folder(self, address: str, name: str, special_use: str | None = None) -> FolderInfo:
        key = await self.account(address)
        use = special_use_arg(special_use) if special_use else None
        try:
            return await self._mailboxes.create_folder(key, name, use)
        except FolderError as exc:
            raise AdminError(f"cannot create folder {name!r} of {key}: {exc}",
                             "`hardmail mailbox list ADDRESS` shows the folders; names use / between levels "
                             "and no level may contain a dot") from None

    async def reindex(self, address: str, folder: str | None = None) -> ReindexReport:
        """Re-index one folder, or every folder of the account (also folder directories made by
        hand, which the index does not know yet)."""
        key = await self.account(address)
        if folder and await self._mailboxes.folder(key, folder) is None:
            raise AdminError(f"{key} has no folder {folder!r}", "`hardmail mailbox list ADDRESS` shows the folders")
        try:
            return await self._mailboxes.reindex(key, folder)
        except FolderError as exc:
            raise AdminError(f"cannot re-index the mailbox of {key}: {exc}",
                             "check that its directories exist and are readable by this user") from None

    async def folder_count(self, address: str) -> int:
        return len(await self._mailboxes.list_folders(await self.account(address)))
