"""The mail part of a selective restore: one account's archived folders merged into its live
mailbox through the mailbox store (so that a running server sees every change through the index's
change feed: an IMAP SELECT after the restore shows the messages).

- A folder missing live is created. It gets the archive's UIDVALIDITY (unless another live folder
  of the account holds that value) and then its messages keep their archived UIDs, and UIDNEXT and
  HIGHESTMODSEQ do not fall below the archived ones: a client that synced the folder before sees
  the same UIDs and downloads nothing again.
- Into an existing folder a message keeps its archived UID only when the UIDVALIDITY is the same
  and the UID is at or above the folder's UIDNEXT (the index decides that in the commit); any
  other gets a new UID: a UID below UIDNEXT may have been seen by a client for another message
  (RFC 9051 2.3.1.1).
- A message whose content (size and SHA-256, from the manifest) is in the live folder already is
  not added again; live files are hashed once per folder, only those of a size an archived message
  has. An archived folder holding the same message twice gets both back.
- ``as_folder`` (``--as-folder Restored``): every archived folder goes under that name
  (``INBOX`` → ``Restored/INBOX``, ``Work/2024`` → ``Restored/Work/2024``), created with new
  UIDVALIDITYs, without special uses (the live Sent stays the \\Sent folder), subscribed; messages
  get new UIDs. Run again, it adds only what is not there yet.
- The quota is not enforced (an admin restores on purpose); going over it is a warning.

The residual window of the first rule: messages that reached a folder after the backup and before
it was deleted live had UIDs at or above the archived UIDNEXT, which a client may have cached; the
restored folder hands those UIDs out again to new mail. Restore with ``--as-folder`` when that
matters (new UIDVALIDITY: clients start that folder afresh).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hardmail.mailbox import MailboxStore
from hardmail.mailbox import names as folder_names
from hardmail.mailbox.files import split_name
from hardmail.mailbox.types import FolderError, RestoredMessage
from hardmail.ops.backup.manifest import FileEntry, Manifest
from hardmail.ops.backup.selective_report import Tally
from hardmail.store.ports import Store
from hardmail.store.ports_mailbox import FolderRow, MessageRecord

ProgressCallback = Callable[[str, int, int], None]
Content = tuple[int, str]  # (size, sha256) of a file as stored
BATCH_MESSAGES = 200
BATCH_BYTES = 32 * 1024 * 1024
_SUBDIRS = ("cur", "new")


@dataclass
class MailboxPlan:
    """Which archived message files of one account are to be restored (the others are live)."""

    account: str
    prefix: str  # files/mail/<domain>/<local>/
    entries: dict[tuple[str, str], FileEntry] = field(default_factory=dict)  # (folder dir, base) -> entry
    wanted: set[str] = field(default_factory=set)  # entry paths to extract and restore

    def select(self, entry: FileEntry) -> bool:
        return entry.path in self.wanted


def target_name(name: str, as_folder: str | None) -> str:
    """The live folder an archived one goes to (raises InvalidName for one too deep or long)."""
    return folder_names.normalize(name if as_folder is None else f"{as_folder}{folder_names.DELIMITER}{name}")


def mail_prefix(mailboxes: MailboxStore, account: str) -> str:
    relative = mailboxes.account_dir(account).relative_to(mailboxes.root)
    return f"files/mail/{relative.as_posix()}/"


async def plan_mailbox(mailboxes: MailboxStore, manifest: Manifest, account: str,
                       as_folder: str | None) -> MailboxPlan:
    """The plan of ``account``: its archived message files, less those whose content is in the live
    folder they would go to."""
    plan = MailboxPlan(account, mail_prefix(mailboxes, account))
    by_folder: dict[str, list[FileEntry]] = defaultdict(list)
    for dirname, base, entry in _message_entries(manifest.files, plan.prefix):
        plan.entries[(dirname, base)] = entry
        by_folder[dirname].append(entry)
    for dirname, entries in by_folder.items():
        live = await _live_contents(mailboxes, account, dirname, as_folder, {e.size for e in entries})
        for entry in entries:
            if live[(entry.size, entry.sha256)] > 0:
                live[(entry.size, entry.sha256)] -= 1
            else:
                plan.wanted.add(entry.path)
    return plan


def _message_entries(entries: Sequence[FileEntry], prefix: str) -> Iterator[tuple[str, str, FileEntry]]:
    """(folder directory, base name, entry) of each message file under ``prefix``."""
    for entry in entries:
        if not entry.path.startswith(prefix):
            continue
        parts = entry.path[len(prefix):].split("/")
        if len(parts) == 2 and parts[0] in _SUBDIRS:
            yield "", split_name(parts[1])[0], entry
        elif len(parts) == 3 and parts[1] in _SUBDIRS and folder_names.name_of_dirname(parts[0]) is not None:
            yield parts[0], split_name(parts[2])[0], entry


def _folder_of_dirname(dirname: str) -> str | None:
    return folder_names.INBOX if dirname == "" else folder_names.name_of_dirname(dirname)


async def _live_contents(mailboxes: MailboxStore, account: str, dirname: str, as_folder: str | None,
                         sizes: set[int]) -> Counter[Content]:
    name = _folder_of_dirname(dirname)
    try:
        target = target_name(name or "", as_folder)
    except FolderError:
        return Counter()
    if await mailboxes.index.get_folder(account, target) is None:
        return Counter()
    return await asyncio.to_thread(_hash_folder, mailboxes.folder_dir(account, target), sizes)


def _hash_folder(directory: Path, sizes: set[int]) -> Counter[Content]:
    found: Counter[Content] = Counter()
    for sub in _SUBDIRS:
        try:
            entries = list(os.scandir(directory / sub))
        except FileNotFoundError:
            continue
        for item in entries:
            try:
                size = item.stat().st_size
                if item.is_file() and size in sizes:
                    found[(size, _sha256(Path(item.path)))] += 1
            except FileNotFoundError:  # renamed by a flag change meanwhile: seen under its new name, or not
                continue
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the restore itself --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Target:
    name: str
    row: FolderRow
    created: bool
    keep_uids: bool  # ask for the archived UIDs
    floors: tuple[int, int] = (0, 0)  # UIDNEXT and MODSEQ at least these (a folder re-created as it was)


async def restore_mailbox(mailboxes: MailboxStore, archived: Store, plan: MailboxPlan, into: Path,
                          as_folder: str | None, tally: Tally, progress: ProgressCallback | None) -> None:
    """Merge the archived folders of ``plan.account`` (its files extracted under ``into``)."""
    account = plan.account
    folders = sorted(await archived.mailbox.list_folders(account), key=lambda row: row.name)
    subscribed = set(await archived.mailbox.subscriptions(account))
    work: list[tuple[_Target, list[tuple[MessageRecord, FileEntry]]]] = []
    for row in folders:
        target = await _target(mailboxes, account, row, as_folder, row.name in subscribed, tally)
        if target is None:
            continue
        snapshot = await archived.mailbox.snapshot(row.id)
        records = snapshot[1] if snapshot is not None else []
        work.append((target, _to_restore(plan, row.name, records, tally)))
    total = sum(entry.size for _, items in work for _, entry in items)
    done = [0, total]
    for target, items in work:
        await _restore_folder(mailboxes, account, target, items, into, tally, _reporter(account, progress, done))
    await mailboxes.ensure_account(account)  # INBOX and the special-use folders, after ours
    tally.mailboxes += 1
    await _warn_over_quota(mailboxes, account, tally)


def _to_restore(plan: MailboxPlan, name: str, records: Sequence[MessageRecord],
                tally: Tally) -> list[tuple[MessageRecord, FileEntry]]:
    dirname = folder_names.dirname(name)
    chosen = []
    for record in records:
        entry = plan.entries.get((dirname, record.name))
        if entry is None:
            tally.messages_without_file += 1
        elif entry.path in plan.wanted:
            chosen.append((record, entry))
        else:
            tally.messages_present += 1
    return chosen


async def _target(mailboxes: MailboxStore, account: str, archived: FolderRow, as_folder: str | None,
                  subscribed: bool, tally: Tally) -> _Target | None:
    try:
        name = target_name(archived.name, as_folder)
    except FolderError as exc:
        tally.warn(f"folder {archived.name!r} of {account} not restored: {exc}")
        return None
    live = await mailboxes.index.get_folder(account, name)
    if live is not None:
        tally.folders_merged += 1
        return _Target(name, live, False, as_folder is None and live.uidvalidity == archived.uidvalidity)
    row = await _create(mailboxes, account, name, archived, as_folder)
    if subscribed or as_folder is not None:
        await mailboxes.set_subscribed(account, name, True)
    tally.folders_created += 1
    same = as_folder is None and row.uidvalidity == archived.uidvalidity
    return _Target(name, row, True, same, (archived.uidnext, archived.highestmodseq + 1) if same else (0, 0))


async def _create(mailboxes: MailboxStore, account: str, name: str, archived: FolderRow,
                  as_folder: str | None) -> FolderRow:
    for parent in folder_names.parent_names(name):
        if parent != folder_names.INBOX and await mailboxes.index.get_folder(account, parent) is None:
            try:
                await mailboxes.create_folder(account, parent)
            except FolderError:
                continue  # made meanwhile
    if as_folder is not None:
        return await mailboxes.new_folder(account, name, None)
    uses = {row.special_use for row in await mailboxes.index.list_folders(account)}
    special_use = archived.special_use if archived.special_use not in uses else None
    return await mailboxes.new_folder(account, name, special_use, uidvalidity=archived.uidvalidity)


async def _restore_folder(mailboxes: MailboxStore, account: str, target: _Target,
                          items: list[tuple[MessageRecord, FileEntry]], into: Path, tally: Tally,
                          report: Callable[[int], None]) -> None:
    items.sort(key=lambda item: item[0].uid)  # kept UIDs only ascend
    uidnext, modseq = target.floors
    for batch in _batches(items):
        messages = await asyncio.to_thread(_read_batch, batch, into, target.keep_uids)
        uids = await mailboxes.append_restored(account, target.name, messages, modseq_at_least=modseq)
        tally.messages_added += len(uids)
        tally.messages_kept_uid += sum(1 for given, message in zip(uids, messages, strict=True)
                                       if given == message.uid)
        size = sum(entry.size for _, entry in batch)
        tally.bytes_added += size
        report(size)
    if uidnext or modseq:  # after the last batch: an earlier UIDNEXT would refuse the archived UIDs after it
        await mailboxes.append_restored(account, target.name, [], uidnext_at_least=uidnext, modseq_at_least=modseq)


def _batches(items: list[tuple[MessageRecord, FileEntry]]) -> Iterator[list[tuple[MessageRecord, FileEntry]]]:
    batch: list[tuple[MessageRecord, FileEntry]] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= BATCH_MESSAGES or size + item[1].size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item[1].size
    if batch:
        yield batch


def _read_batch(batch: list[tuple[MessageRecord, FileEntry]], into: Path, keep_uids: bool) -> list[RestoredMessage]:
    return [RestoredMessage((into / entry.path).read_bytes(), record.flags, record.internaldate,
                            record.uid if keep_uids else None) for record, entry in batch]


def _reporter(account: str, progress: ProgressCallback | None, done: list[int]) -> Callable[[int], None]:
    def report(size: int) -> None:
        done[0] += size
        if progress is not None:
            progress(f"restoring {account}", done[0], done[1])
    return report


async def _warn_over_quota(mailboxes: MailboxStore, account: str, tally: Tally) -> None:
    quota = await mailboxes.quota(account)
    over_storage = quota.storage_limit is not None and quota.storage_used > quota.storage_limit
    over_count = quota.messages_limit is not None and quota.messages_used > quota.messages_limit
    if over_storage or over_count:
        used = (f"{quota.storage_used} of {quota.storage_limit} bytes" if over_storage
                else f"{quota.messages_used} of {quota.messages_limit} messages")
        tally.warn(f"{account} is over its quota after the restore ({used}): new mail is refused until it is "
                   f"cleaned up or `hardmail mailbox quota {account} ...` raises the limit")
