"""``SqlMailboxIndex``: :class:`hardmail.store.ports_mailbox.MailboxIndex` on SQLAlchemy 2 async.

Every write is one transaction that first locks the folder rows it changes (an UPDATE, in folder
id order: on PostgreSQL the row lock serialises writers of a folder, on SQLite ``BEGIN IMMEDIATE``
serialises all writers), then allocates UIDs from UIDNEXT and one new MODSEQ from HIGHESTMODSEQ,
so two processes never hand out the same UID or MODSEQ. Counters (messages, size, unseen,
deleted) and the account's usage change in the same transaction as the messages.
A snapshot reads the folder row and its messages in one read transaction (PostgreSQL: REPEATABLE
READ), so UIDNEXT and the message list agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hardmail.core.bulk import bulk_allocation
from hardmail.core.clock import Clock
from hardmail.store.ports import AlreadyExists, NotFound
from hardmail.store.ports_mailbox import (
    AccountUsage,
    ApplyResult,
    DirStamp,
    FlagUpdate,
    FolderChange,
    FolderRow,
    MailboxChange,
    MessageRecord,
    OverQuota,
    SyncEntry,
)
from hardmail.store.sql.engine import for_writing
from hardmail.store.sql.tables_mailbox import (
    mailbox_accounts as accounts_t,
)
from hardmail.store.sql.tables_mailbox import (
    mailbox_changes as changes_t,
)
from hardmail.store.sql.tables_mailbox import (
    mailbox_folders as folders_t,
)
from hardmail.store.sql.tables_mailbox import (
    mailbox_messages as messages_t,
)
from hardmail.store.sql.tables_mailbox import (
    mailbox_subscriptions as subs_t,
)
from hardmail.store.sql.tables_mailbox import (
    mailbox_vanished as vanished_t,
)

CHUNK = 500  # values per IN (...) list
BIG_READ = 2000  # rows from which records are built in a thread
SEEN, DELETED = "\\Seen", "\\Deleted"
_MSG_COLUMNS = (messages_t.c.uid, messages_t.c.modseq, messages_t.c.flags, messages_t.c.internaldate,
                messages_t.c.size, messages_t.c.name)
_SYNC_COLUMNS = (messages_t.c.uid, messages_t.c.name, messages_t.c.flags, messages_t.c.modseq,
                 messages_t.c.size, messages_t.c.in_new)
_flag_sets: dict[str, frozenset[str]] = {}


def flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def flag_set(text: str) -> frozenset[str]:
    """The flags of a ``flags`` column (cached: most messages share a few combinations)."""
    found = _flag_sets.get(text)
    if found is None:
        found = frozenset(text.split())
        if len(_flag_sets) < 10_000:
            _flag_sets[text] = found
    return found


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


def _folder_row(row: Any) -> FolderRow:
    return FolderRow(
        id=row.id, account=row.account, name=row.name, special_use=row.special_use,
        uidvalidity=row.uidvalidity, uidnext=row.uidnext, highestmodseq=row.highestmodseq,
        messages=row.messages, size=row.size, unseen=row.unseen, deleted=row.deleted,
        first_recent_uid=row.first_recent_uid, stamp=DirStamp(row.new_mtime_ns, row.cur_mtime_ns),
    )


def message_records(rows: Iterable[Any]) -> list[MessageRecord]:
    stamp_cache: dict[int, datetime] = {}
    records = []
    with bulk_allocation():
        for uid, modseq, flags, internaldate, size, name in rows:
            when = stamp_cache.get(internaldate)
            if when is None:
                when = stamp_cache[internaldate] = datetime.fromtimestamp(internaldate, UTC)
            records.append(MessageRecord(uid, modseq, flag_set(flags), when, size, name))
    return records


@dataclass
class _Counters:
    """What one apply changes in a folder row and in the account's usage."""

    messages: int = 0
    size: int = 0
    unseen: int = 0
    deleted: int = 0
    uids_used: int = 0
    changed: bool = False

    def count(self, flags: frozenset[str], size: int, sign: int) -> None:
        self.messages += sign
        self.size += sign * size
        self.unseen += sign * (SEEN not in flags)
        self.deleted += sign * (DELETED in flags)
        self.changed = True


class SqlMailboxIndex:
    """The mailbox tables; built by ``SqlStore.mailbox`` on the store's engine."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._writer = for_writing(engine)
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    # folders

    async def create_folder(self, account: str, name: str, special_use: str | None, uidvalidity: int,
                            stamp: DirStamp, *, reuse_uidvalidity: bool = False) -> FolderRow:
        try:
            async with self._writer.begin() as conn:
                last = await _lock_account(conn, account)
                if await _folder_id(conn, account, name) is not None:
                    raise AlreadyExists("folder exists")
                if reuse_uidvalidity and 0 < uidvalidity < 2**32 and not await _uidvalidity_used(
                        conn, account, uidvalidity):
                    value = uidvalidity
                else:
                    value = max(uidvalidity, last + 1) % 2**32 or 1
                await conn.execute(update(accounts_t).where(accounts_t.c.account == account)
                                   .values(last_uidvalidity=max(value, last)))
                await conn.execute(insert(folders_t).values(
                    account=account, name=name, special_use=special_use, uidvalidity=value, uidnext=1,
                    highestmodseq=1, messages=0, size=0, unseen=0, deleted=0, first_recent_uid=1,
                    new_mtime_ns=stamp.new_mtime_ns, cur_mtime_ns=stamp.cur_mtime_ns, created_at=self._now()))
                await self._record(conn, account, name)
        except IntegrityError:
            raise AlreadyExists("folder exists") from None
        found = await self.get_folder(account, name)
        assert found is not None
        return found

    async def get_folder(self, account: str, name: str) -> FolderRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(folders_t).where(
                and_(folders_t.c.account == account, folders_t.c.name == name)))).first()
        return None if row is None else _folder_row(row)

    async def list_folders(self, account: str) -> list[FolderRow]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(folders_t).where(folders_t.c.account == account)
                                      .order_by(folders_t.c.name))
            return [_folder_row(row) for row in rows]

    async def all_folders(self, after_id: int = 0, limit: int = 1000) -> list[FolderRow]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(folders_t).where(folders_t.c.id > after_id)
                                      .order_by(folders_t.c.id).limit(limit))
            return [_folder_row(row) for row in rows]

    async def delete_folder(self, folder_id: int) -> None:
        async with self._writer.begin() as conn:  # locks: the folder row, then the account (as apply)
            row = (await conn.execute(update(folders_t).where(folders_t.c.id == folder_id)
                                      .values(uidnext=folders_t.c.uidnext).returning(*folders_t.c))).first()
            if row is None:
                raise NotFound("no such folder")
            await _lock_account(conn, row.account)
            await conn.execute(delete(messages_t).where(messages_t.c.folder_id == folder_id))
            await conn.execute(delete(vanished_t).where(vanished_t.c.folder_id == folder_id))
            await conn.execute(delete(folders_t).where(folders_t.c.id == folder_id))
            await conn.execute(update(accounts_t).where(accounts_t.c.account == row.account).values(
                storage_used=accounts_t.c.storage_used - row.size,
                messages_used=accounts_t.c.messages_used - row.messages))
            await self._record(conn, row.account, row.name)

    async def rename_folders(self, account: str, renames: Sequence[tuple[str, str]]) -> None:
        try:
            async with self._writer.begin() as conn:
                for old, new in renames:
                    if await _folder_id(conn, account, new) is not None:
                        raise AlreadyExists("folder exists")
                    result = await conn.execute(update(folders_t).where(
                        and_(folders_t.c.account == account, folders_t.c.name == old)).values(name=new))
                    if not result.rowcount:
                        raise NotFound("no such folder")
                    await conn.execute(update(subs_t).where(
                        and_(subs_t.c.account == account, subs_t.c.name == old)).values(name=new))
                    await self._record(conn, account, old)
                    await self._record(conn, account, new)
        except IntegrityError:
            raise AlreadyExists("folder exists") from None

    async def set_subscribed(self, account: str, name: str, subscribed: bool) -> None:
        where = and_(subs_t.c.account == account, subs_t.c.name == name)
        try:
            async with self._writer.begin() as conn:
                await conn.execute(delete(subs_t).where(where))
                if subscribed:
                    await conn.execute(insert(subs_t).values(account=account, name=name))
        except IntegrityError:
            pass  # subscribed by a concurrent call

    async def subscriptions(self, account: str) -> list[str]:
        async with self._engine.connect() as conn:
            return list(await conn.scalars(select(subs_t.c.name).where(subs_t.c.account == account)
                                           .order_by(subs_t.c.name)))

    # messages

    async def snapshot(self, folder_id: int) -> tuple[FolderRow, list[MessageRecord]] | None:
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            row = (await conn.execute(select(folders_t).where(folders_t.c.id == folder_id))).first()
            if row is None:
                return None
            rows = await _all_message_rows(conn, folder_id)
        return _folder_row(row), await _records(rows)

    async def snapshot_since(self, folder_id: int, modseq: int
                             ) -> tuple[FolderRow, list[MessageRecord], list[int]] | None:
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            row = (await conn.execute(select(folders_t).where(folders_t.c.id == folder_id))).first()
            if row is None:
                return None
            changed, vanished = await _changes(conn, folder_id, modseq)
            return _folder_row(row), changed, vanished

    async def claim_recent(self, folder_id: int) -> tuple[int, int]:
        async with self._writer.begin() as conn:
            row = (await conn.execute(update(folders_t).where(folders_t.c.id == folder_id)
                                      .values(uidnext=folders_t.c.uidnext)
                                      .returning(folders_t.c.first_recent_uid, folders_t.c.uidnext))).first()
            if row is None:
                raise NotFound("no such folder")
            if row.first_recent_uid < row.uidnext:
                await conn.execute(update(folders_t).where(folders_t.c.id == folder_id)
                                   .values(first_recent_uid=row.uidnext))
        return int(row.first_recent_uid), int(row.uidnext)

    async def sync_entries(self, folder_id: int, uids: Sequence[int] | None = None, *,
                           only_in_new: bool = False, only_deleted: bool = False) -> list[SyncEntry]:
        query = select(*_SYNC_COLUMNS).where(messages_t.c.folder_id == folder_id).order_by(messages_t.c.uid)
        if only_in_new:
            query = query.where(messages_t.c.in_new.is_(True))
        if only_deleted:  # a keyword is an atom: it never holds a backslash, so this finds the flag only
            query = query.where(messages_t.c.flags.contains(DELETED, autoescape=True))
        async with self._engine.connect() as conn:
            if uids is None:
                rows = list(await conn.execute(query))
            else:
                rows = []
                for part in _chunks(sorted(set(uids))):
                    rows.extend(await conn.execute(query.where(messages_t.c.uid.in_(part))))
        return [SyncEntry(uid, name, flag_set(flags), modseq, size, in_new)
                for uid, name, flags, modseq, size, in_new in rows]

    async def changes_since(self, folder_id: int, modseq: int) -> tuple[list[MessageRecord], list[int]]:
        async with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execution_options(isolation_level="REPEATABLE READ")
            return await _changes(conn, folder_id, modseq)

    async def apply(self, changes: Sequence[tuple[int, FolderChange]],
                    quota_defaults: tuple[int | None, int | None] = (None, None)) -> list[ApplyResult]:
        results: dict[int, ApplyResult] = {}
        async with self._writer.begin() as conn:
            usage: dict[str, tuple[int, int, bool]] = {}
            for folder_id, change in sorted(changes, key=lambda item: item[0]):
                result, counters, account = await self._apply_one(conn, folder_id, change)
                results[folder_id] = result
                size, count, check = usage.get(account, (0, 0, False))
                usage[account] = (size + counters.size, count + counters.messages, check or change.check_quota)
            for account, (size, count, check) in usage.items():
                await _charge(conn, account, size, count, quota_defaults if check else None)
        return [results[folder_id] for folder_id, _ in changes]

    async def _apply_one(self, conn: AsyncConnection, folder_id: int,
                         change: FolderChange) -> tuple[ApplyResult, _Counters, str]:
        locked = (await conn.execute(update(folders_t).where(folders_t.c.id == folder_id)
                                     .values(uidnext=folders_t.c.uidnext).returning(*folders_t.c))).first()
        if locked is None:
            raise NotFound("no such folder")
        row = _folder_row(locked)
        modseq, counters = max(row.highestmodseq + 1, change.modseq_at_least), _Counters()
        uids = await _add(conn, row, modseq, change, counters)
        await _update(conn, folder_id, modseq, change, counters)
        await _remove(conn, folder_id, modseq, change.removed, counters)
        values: dict[str, Any] = {
            "uidnext": max(row.uidnext + counters.uids_used, change.uidnext_at_least),
            "messages": row.messages + counters.messages,
            "size": row.size + counters.size, "unseen": row.unseen + counters.unseen,
            "deleted": row.deleted + counters.deleted,
        }
        if counters.changed:
            values["highestmodseq"] = modseq
            await self._record(conn, row.account, row.name)
        elif change.modseq_at_least > row.highestmodseq:  # a restored folder without messages
            values["highestmodseq"] = change.modseq_at_least
        values.update(_stamp_values(row.stamp, change))
        updated = (await conn.execute(update(folders_t).where(folders_t.c.id == folder_id).values(**values)
                                      .returning(*folders_t.c))).one()
        result = ApplyResult(uids, modseq if counters.changed else row.highestmodseq, _folder_row(updated),
                             counters.changed)
        return result, counters, row.account

    async def _record(self, conn: AsyncConnection, account: str, folder: str) -> None:
        await conn.execute(insert(changes_t).values(account=account, folder=folder, at=self._now()))

    # usage and limits

    async def usage(self, account: str) -> AccountUsage:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accounts_t).where(accounts_t.c.account == account))).first()
        if row is None:
            return AccountUsage(0, 0, False, None, None)
        return AccountUsage(row.storage_used, row.messages_used, row.custom_limits, row.storage_limit,
                            row.messages_limit)

    async def set_limits(self, account: str, storage: int | None, messages: int | None, *,
                         custom: bool = True) -> None:
        async with self._writer.begin() as conn:
            await _lock_account(conn, account)
            await conn.execute(update(accounts_t).where(accounts_t.c.account == account).values(
                custom_limits=custom, storage_limit=storage if custom else None,
                messages_limit=messages if custom else None))

    async def recount_usage(self, account: str) -> AccountUsage:
        async with self._writer.begin() as conn:
            await _lock_account(conn, account)
            size, count = (await conn.execute(
                select(func.coalesce(func.sum(messages_t.c.size), 0), func.count())
                .select_from(messages_t.join(folders_t, folders_t.c.id == messages_t.c.folder_id))
                .where(folders_t.c.account == account))).one()
            await conn.execute(update(accounts_t).where(accounts_t.c.account == account)
                               .values(storage_used=int(size), messages_used=int(count)))
        return await self.usage(account)

    async def recount_folder(self, folder_id: int) -> FolderRow:
        mine = messages_t.c.folder_id == folder_id
        count = select(func.count()).where(mine).scalar_subquery()
        size = select(func.coalesce(func.sum(messages_t.c.size), 0)).where(mine).scalar_subquery()
        unseen = select(func.count()).where(and_(mine, ~messages_t.c.flags.contains(SEEN, autoescape=True)))
        deleted = select(func.count()).where(and_(mine, messages_t.c.flags.contains(DELETED, autoescape=True)))
        async with self._writer.begin() as conn:
            row = (await conn.execute(update(folders_t).where(folders_t.c.id == folder_id).values(
                messages=count, size=size, unseen=unseen.scalar_subquery(), deleted=deleted.scalar_subquery())
                .returning(*folders_t.c))).first()
        if row is None:
            raise NotFound("no such folder")
        return _folder_row(row)

    # the change feed

    async def latest_change(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.max(changes_t.c.id))) or 0)

    async def changes_after(self, after_id: int, limit: int = 1000) -> list[MailboxChange]:
        query = select(changes_t).where(changes_t.c.id > after_id).order_by(changes_t.c.id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [MailboxChange(row.id, row.account, row.folder, row.at) for row in rows]

    async def prune_changes(self, before: datetime) -> int:
        async with self._writer.begin() as conn:
            result = await conn.execute(delete(changes_t).where(changes_t.c.at < before))
        return int(result.rowcount or 0)


_SQLITE_ALL_MESSAGES = ("SELECT uid, modseq, flags, internaldate, size, name FROM mailbox_messages "
                        "WHERE folder_id = ? ORDER BY uid")


async def _all_message_rows(conn: AsyncConnection, folder_id: int) -> Sequence[Any]:
    """Every message row of a folder, in the open read transaction of ``conn``. On SQLite the
    driver fetches them in its own thread as plain tuples (a third faster for 100,000 rows, and
    none of the row handling on the event loop)."""
    if conn.dialect.name == "sqlite":
        driver = (await conn.get_raw_connection()).driver_connection  # aiosqlite's connection
        assert driver is not None
        rows: Sequence[Any] = await driver.execute_fetchall(_SQLITE_ALL_MESSAGES, (folder_id,))
        return rows
    query = select(*_MSG_COLUMNS).where(messages_t.c.folder_id == folder_id).order_by(messages_t.c.uid)
    return (await conn.execute(query)).all()


async def _records(rows: Sequence[Any]) -> list[MessageRecord]:
    """The records of message rows; a big folder's are built in a thread, off the event loop."""
    if len(rows) < BIG_READ:
        return message_records(rows)
    return await asyncio.to_thread(message_records, rows)


async def _changes(conn: AsyncConnection, folder_id: int, modseq: int) -> tuple[list[MessageRecord], list[int]]:
    rows = (await conn.execute(select(*_MSG_COLUMNS).where(
        and_(messages_t.c.folder_id == folder_id, messages_t.c.modseq > modseq)).order_by(messages_t.c.uid))).all()
    changed = await _records(rows)
    vanished = list(await conn.scalars(select(vanished_t.c.uid).where(
        and_(vanished_t.c.folder_id == folder_id, vanished_t.c.modseq > modseq)).order_by(vanished_t.c.uid)))
    return changed, vanished


def _stamp_values(stored: DirStamp, change: FolderChange) -> dict[str, int]:
    """The directory times to record: each of new/ and cur/ compare-and-set on its own."""
    after, before = change.stamp_after, change.stamp_before
    if after is None or (before is None and not change.force_stamp):
        return {}
    values = {}
    if change.force_stamp or (before is not None and before.new_mtime_ns == stored.new_mtime_ns):
        values["new_mtime_ns"] = after.new_mtime_ns
    if change.force_stamp or (before is not None and before.cur_mtime_ns == stored.cur_mtime_ns):
        values["cur_mtime_ns"] = after.cur_mtime_ns
    return values


async def _folder_id(conn: AsyncConnection, account: str, name: str) -> int | None:
    found = await conn.scalar(select(folders_t.c.id).where(
        and_(folders_t.c.account == account, folders_t.c.name == name)))
    return None if found is None else int(found)


async def _uidvalidity_used(conn: AsyncConnection, account: str, uidvalidity: int) -> bool:
    found = await conn.scalar(select(folders_t.c.id).where(
        and_(folders_t.c.account == account, folders_t.c.uidvalidity == uidvalidity)).limit(1))
    return found is not None


async def _lock_account(conn: AsyncConnection, account: str) -> int:
    """Create the account's usage row when missing and lock it; returns its last UIDVALIDITY."""
    locked = await conn.scalar(update(accounts_t).where(accounts_t.c.account == account)
                               .values(last_uidvalidity=accounts_t.c.last_uidvalidity)
                               .returning(accounts_t.c.last_uidvalidity))
    if locked is not None:
        return int(locked)
    await conn.execute(insert(accounts_t).values(
        account=account, storage_used=0, messages_used=0, custom_limits=False, storage_limit=None,
        messages_limit=None, last_uidvalidity=0))
    return 0


async def _charge(conn: AsyncConnection, account: str, size: int, count: int,
                  defaults: tuple[int | None, int | None] | None) -> None:
    if not size and not count:
        return
    charge = update(accounts_t).where(accounts_t.c.account == account).values(
        storage_used=accounts_t.c.storage_used + size, messages_used=accounts_t.c.messages_used + count
    ).returning(*accounts_t.c)
    row = (await conn.execute(charge)).first()
    if row is None:  # an account without a usage row yet
        await _lock_account(conn, account)
        row = (await conn.execute(charge)).one()
    if defaults is None or (size <= 0 and count <= 0):
        return
    storage_limit, messages_limit = (row.storage_limit, row.messages_limit) if row.custom_limits else defaults
    if (storage_limit is not None and row.storage_used > storage_limit) or (
            messages_limit is not None and row.messages_used > messages_limit):
        raise OverQuota("over quota")  # rolls the whole transaction back


async def _add(conn: AsyncConnection, row: FolderRow, modseq: int, change: FolderChange,
               counters: _Counters) -> list[int]:
    if not change.added:
        return []
    known: dict[str, int] = {}
    for part in _chunks([message.name for message in change.added]):
        found = await conn.execute(select(messages_t.c.name, messages_t.c.uid).where(
            and_(messages_t.c.folder_id == row.id, messages_t.c.name.in_(part))))
        known.update({name: int(uid) for name, uid in found})
    uids, rows = [], []
    for message in change.added:
        if message.name in known:
            uids.append(known[message.name])
            continue
        uid = row.uidnext + counters.uids_used
        if message.uid is not None and uid <= message.uid < 2**32:  # RFC 9051 2.3.1.1: UIDs only ascend
            uid = message.uid
        known[message.name] = uid
        counters.uids_used = uid - row.uidnext + 1
        counters.count(message.flags, message.size, +1)
        uids.append(uid)
        rows.append({"folder_id": row.id, "uid": uid, "name": message.name, "flags": flags_text(message.flags),
                     "modseq": modseq, "internaldate": int(message.internaldate.timestamp()),
                     "size": message.size, "in_new": message.in_new})
    if rows:
        await conn.execute(insert(messages_t), rows)
    return uids


async def _update(conn: AsyncConnection, folder_id: int, modseq: int, change: FolderChange,
                  counters: _Counters) -> None:
    if change.moved_in_new:
        for part in _chunks(list(change.moved_in_new)):
            await conn.execute(update(messages_t).where(
                and_(messages_t.c.folder_id == folder_id, messages_t.c.name.in_(part))).values(in_new=False))
    if not change.updated:
        return
    old: dict[int, tuple[frozenset[str], int, bool]] = {}
    for part in _chunks(sorted({item.uid for item in change.updated})):
        found = await conn.execute(select(messages_t.c.uid, messages_t.c.flags, messages_t.c.size,
                                          messages_t.c.in_new).where(
            and_(messages_t.c.folder_id == folder_id, messages_t.c.uid.in_(part))))
        old.update({int(uid): (flag_set(flags), size, in_new) for uid, flags, size, in_new in found})
    rows = _flag_rows(folder_id, modseq, change.updated, old, counters)
    bumped = [r for r in rows if r["modseq"] is not None]
    moved = [r for r in rows if r["modseq"] is None]
    where = and_(messages_t.c.folder_id == bindparam("f"), messages_t.c.uid == bindparam("u"))
    if bumped:
        await conn.execute(update(messages_t).where(where).values(
            flags=bindparam("flags"), in_new=bindparam("in_new"), modseq=bindparam("modseq")), bumped)
    if moved:
        await conn.execute(update(messages_t).where(where).values(in_new=bindparam("in_new")),
                           [{k: v for k, v in r.items() if k in ("f", "u", "in_new")} for r in moved])


def _flag_rows(folder_id: int, modseq: int, updates: Sequence[FlagUpdate],
               old: dict[int, tuple[frozenset[str], int, bool]], counters: _Counters) -> list[dict[str, Any]]:
    """The UPDATE parameters of the updates that change something; a flag change gets ``modseq``."""
    rows = []
    for item in updates:
        if item.uid not in old:
            continue
        flags, size, in_new = old[item.uid]
        new_in_new = in_new if item.in_new is None else item.in_new
        if item.flags == flags and new_in_new == in_new:
            continue
        bump = item.flags != flags
        if bump:
            counters.count(flags, size, -1)
            counters.count(item.flags, size, +1)
        rows.append({"f": folder_id, "u": item.uid, "flags": flags_text(item.flags), "in_new": new_in_new,
                     "modseq": modseq if bump else None})
        old[item.uid] = (item.flags, size, new_in_new)
    return rows


async def _remove(conn: AsyncConnection, folder_id: int, modseq: int, uids: Sequence[int],
                  counters: _Counters) -> None:
    for part in _chunks(sorted(set(uids))):
        found = list(await conn.execute(select(messages_t.c.uid, messages_t.c.flags, messages_t.c.size).where(
            and_(messages_t.c.folder_id == folder_id, messages_t.c.uid.in_(part)))))
        if not found:
            continue
        gone = [int(uid) for uid, _flags, _size in found]
        await conn.execute(delete(messages_t).where(
            and_(messages_t.c.folder_id == folder_id, messages_t.c.uid.in_(gone))))
        await conn.execute(insert(vanished_t), [{"folder_id": folder_id, "uid": uid, "modseq": modseq}
                                                for uid in gone])
        for _uid, flags, size in found:
            counters.count(flag_set(flags), size, -1)
