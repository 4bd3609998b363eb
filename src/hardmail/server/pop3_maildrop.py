"""The POP3 side of the mailbox store: the exclusive lock, the maildrop at login, message files.

Exclusive access (RFC 1939 8: "the POP3 server acquires an exclusive-access lock on the
maildrop"): an advisory ``flock`` on ``<INBOX Maildir>/hardmail-pop3.lock``, taken without
waiting. It holds across processes (worker processes, another server on the same data directory)
and between two sessions of one process (each opens the file itself); it is released when the
session ends, and by the kernel when a process dies. IMAP sessions do not take it: IMAP and POP3
may use the INBOX at once, as with Dovecot.

The maildrop is the INBOX after ``MailboxStore.sync`` at login, in UID order. Sizes are the
octets RETR sends without byte-stuffing (``proto.pop3.multiline.crlf_size``): Dovecot's "virtual
size" ``,W=<n>`` of the file name when it has one, else counted from the file once per process and
remembered (files never change under one base name). Files are read in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from hardmail.mailbox import MailboxStore, MessageRecord
from hardmail.proto.pop3.maildrop import DropMessage, Maildrop, dovecot_uidl
from hardmail.proto.pop3.multiline import CrlfCounter

INBOX = "INBOX"
LOCK_FILE = "hardmail-pop3.lock"
READ_CHUNK = 64 * 1024
SIZE_CACHE_ENTRIES = 200_000
_VIRTUAL_SIZE = re.compile(r",W=(\d+)")


class MaildropInUse(Exception):
    """Another POP3 session holds the maildrop's lock."""


class MaildropLock:
    """An exclusive, non-blocking ``flock``; :meth:`release` is idempotent."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def take(cls, maildir: Path) -> MaildropLock:
        maildir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(maildir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MaildropInUse(str(maildir)) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor drops the flock


class SizeCache:
    """(maildir, base name) → POP3 size, least recently used dropped first."""

    def __init__(self, entries: int = SIZE_CACHE_ENTRIES) -> None:
        self._sizes: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._entries = entries

    def get(self, key: tuple[str, str]) -> int | None:
        size = self._sizes.get(key)
        if size is not None:
            self._sizes.move_to_end(key)
        return size

    def put(self, key: tuple[str, str], size: int) -> None:
        self._sizes[key] = size
        self._sizes.move_to_end(key)
        while len(self._sizes) > self._entries:
            self._sizes.popitem(last=False)


SIZES = SizeCache()


def files_by_name(maildir: Path) -> dict[str, Path]:
    """Every message file of ``cur/`` and ``new/`` by base name (before ``:2,``), one listing each."""
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(maildir / sub):
                found[entry.name.partition(":")[0]] = Path(entry.path)
    return found


def file_size(path: Path) -> int:
    counter = CrlfCounter()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            counter.feed(chunk)
    return counter.size


def pop3_sizes(maildir: Path, records: list[MessageRecord]) -> list[int | None]:
    """The POP3 size of each record; None for a message whose file is gone (not offered)."""
    files: dict[str, Path] | None = None
    sizes: list[int | None] = []
    for record in records:
        virtual = _VIRTUAL_SIZE.search(record.name)
        key = (str(maildir), record.name)
        size = int(virtual.group(1)) if virtual else SIZES.get(key)
        if size is None:
            files = files_by_name(maildir) if files is None else files
            path = files.get(record.name)
            try:
                size = file_size(path) if path is not None else None
            except FileNotFoundError:
                size = None
            if size is not None:
                SIZES.put(key, size)
        sizes.append(size)
    return sizes


async def open_maildrop(mailboxes: MailboxStore, maildir: Path, account: str) -> tuple[Maildrop, MaildropLock]:
    """Lock the INBOX, sync it, and number its messages; MaildropInUse when locked elsewhere."""
    lock = await asyncio.to_thread(MaildropLock.take, maildir)
    try:
        await mailboxes.ensure_account(account)
        snapshot = await mailboxes.sync(account, INBOX, claim_recent=False)  # \Recent stays for IMAP
        sizes = await asyncio.to_thread(pop3_sizes, maildir, snapshot.messages)
    except BaseException:
        lock.release()
        raise
    uidvalidity = snapshot.info.uidvalidity
    messages = [DropMessage(record.uid, size, dovecot_uidl(record.uid, uidvalidity))
                for record, size in zip(snapshot.messages, sizes, strict=True) if size is not None]
    return Maildrop(messages), lock


def open_file(path: Path) -> BinaryIO | None:
    try:
        return path.open("rb")
    except FileNotFoundError:
        return None


