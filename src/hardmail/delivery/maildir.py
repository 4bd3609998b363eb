"""Durable local delivery into Maildir folders, one per account.

Layout: ``<root>/<domain>/<local part>/{new,cur,tmp}``. File names follow the Maildir spec
(https://cr.yp.to/proto/maildir.html) in Dovecot's form
``<seconds>.M<microseconds>P<pid>Q<counter>.<host>,S=<size>``.

The durability rule: a message is written once to ``tmp/``, fsync'd, hard-linked into the other
recipients' ``tmp/``, renamed into ``new/`` and every ``new/`` directory touched is fsync'd before
:meth:`MaildirStore.deliver` returns. ``tmp/`` is not synced: after a crash it may keep a stale
file, which readers remove (Maildir spec), but a message in ``new/`` is never lost. A batch
(:meth:`MaildirStore.deliver_batch`, used by group commit) writes all its files first and fsyncs
them afterwards, so that the file system commits them together instead of one journal commit per
file. On any error nothing of the delivery remains, so a caller that answers DATA with 250 only
after ``deliver`` returns never loses or half-writes a message.
Everything here is synchronous; async callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hardmail.core.address import AddressError, normalize_domain
from hardmail.delivery.durable import (
    Chunks,
    Part,
    as_chunks,
    fsync_dir,
    make_private_dir,
    part_size,
    remove_quietly,
    write_all,
    write_new_file,
)

_SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._+-")
_MAILDIR_SUBDIRS = ("tmp", "new", "cur")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,99}$")


def folder_directory(folder: str) -> str:
    """The Maildir++ directory of a top-level folder: ``Junk`` → ``.Junk``; other names are refused."""
    if not _FOLDER_NAME.match(folder):
        raise ValueError(f"{folder!r} is not a folder name this server delivers to (letters, digits, space, _ -)")
    return "." + folder


def safe_path_component(text: str) -> str:
    """``text`` lower-cased, with every character outside ``[a-z0-9._+-]`` percent-encoded.

    The encoding is of the UTF-8 bytes, upper-case hex (``ü`` → ``%C3%BC``); ``%`` itself is
    encoded, so two different inputs never share a directory. A leading dot is encoded too, so the
    result is never ``.``, ``..`` or a hidden name. Raises ValueError for empty text.
    """
    if not text:
        raise ValueError("empty name cannot be a mailbox directory")
    parts = []
    for char in text.lower():
        if char in _SAFE_NAME_CHARS:
            parts.append(char)
        else:
            parts.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8")))
    if parts[0] == ".":
        parts[0] = "%2E"
    return "".join(parts)


def escape_hostname(hostname: str) -> str:
    """The host part of a Maildir file name: ``/`` → ``\\057``, ``:`` → ``\\072`` (Maildir spec).

    ``,`` is escaped as ``\\054`` as well, because ``,S=<size>`` follows the host name.
    """
    return hostname.replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")


class UniqueNames:
    """Maildir base names unique within this process: time, pid and a per-process counter (also
    used by the mailbox store, ``hardmail.mailbox``)."""

    def __init__(self, hostname: str) -> None:
        self._host = escape_hostname(hostname)
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def next(self, size: int) -> str:
        with self._lock:
            number = next(self._counter)
        now = time.time_ns() // 1000
        seconds, micros = divmod(now, 1_000_000)
        return f"{seconds}.M{micros}P{os.getpid()}Q{number}.{self._host},S={size}"


@dataclass
class _Delivery:
    """What one delivery created so far, so that a failure can remove all of it."""

    tmp_files: list[Path] = field(default_factory=list)
    unsynced: list[tuple[Path, int]] = field(default_factory=list)  # written, still open, not yet fsync'd
    new_files: list[Path] = field(default_factory=list)
    directories: set[Path] = field(default_factory=set)

    def sync_files(self) -> None:
        """fsync every written file through the descriptor it was written with, then close it."""
        while self.unsynced:
            path, fd = self.unsynced[-1]
            fsync_file(path, fd)
            self.unsynced.pop()
            os.close(fd)

    def close_files(self) -> None:
        for _path, fd in self.unsynced:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.unsynced.clear()

    def roll_back(self) -> None:
        self.close_files()
        for path in self.new_files + self.tmp_files:
            remove_quietly(path)


class MaildirStore:
    """Maildir folders under ``root``; see the module docstring for layout and guarantees."""

    def __init__(self, root: Path, hostname: str) -> None:
        self.root = Path(root)
        self._names = UniqueNames(hostname)
        self._ready: set[Path] = set()  # maildirs known to have tmp/ new/ cur/ (forgotten on any error)

    def mailbox_path(self, address: str) -> Path:
        """The Maildir of ``address`` (``local@domain``); raises ValueError for a malformed one."""
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain:
            raise ValueError(f"{address!r} is not local@domain")
        try:
            domain = normalize_domain(domain)
        except AddressError as exc:
            raise ValueError(str(exc)) from None
        return self.root / safe_path_component(domain) / safe_path_component(local)

    def deliver(self, addresses: Sequence[str], message: Chunks, folder: str | None = None) -> list[Path]:
        """Store ``message`` once for each distinct mailbox of ``addresses``; returns the files.

        ``message`` is bytes or a sequence of chunks (e.g. new header lines + received data).
        ``folder`` (e.g. ``Junk``) delivers into that Maildir++ subfolder instead of the inbox.
        When this returns the message is on disk in every ``new/``; on error nothing remains.
        """
        return self.deliver_batch([(addresses, message)], folder)[0]

    def deliver_batch(self, items: Sequence[tuple[Sequence[str], Chunks]],
                      folder: str | None = None) -> list[list[Path]]:
        """Deliver several messages with one round of directory fsyncs at the end.

        All or nothing: on any error every file of the batch is removed and the error raised.
        """
        delivery = _Delivery()
        try:
            staged = [self._stage(addresses, message, delivery, folder) for addresses, message in items]
            delivery.sync_files()  # after the first, the journal commit usually covers the rest
            results = [self._publish(mailboxes, tmp_files, delivery) for mailboxes, tmp_files in staged]
            for directory in sorted(delivery.directories):
                fsync_dir(directory)
        except BaseException:
            self._ready.clear()  # a maildir may have been removed under us: check them all again
            delivery.roll_back()
            raise
        return results

    def _stage(self, addresses: Sequence[str], message: Chunks, delivery: _Delivery,
               folder: str | None = None) -> tuple[list[Path], list[Path]]:
        """Write and link one message into ``tmp/``; the caller fsyncs, renames and syncs directories."""
        subfolder = folder_directory(folder) if folder else None
        mailboxes = list(dict.fromkeys(self.mailbox_path(address) / subfolder if subfolder
                                       else self.mailbox_path(address) for address in addresses))
        if not mailboxes:
            raise ValueError("no recipients to deliver to")
        chunks = list(as_chunks(message))
        name = self._names.next(sum(part_size(chunk) for chunk in chunks))
        return mailboxes, self._write_tmp_files(mailboxes, name, chunks, delivery)

    def _publish(self, mailboxes: list[Path], tmp_files: list[Path], delivery: _Delivery) -> list[Path]:
        """Rename each fsync'd ``tmp/`` file into ``new/``; the directories are fsync'd by the caller."""
        finals = []
        for mailbox, tmp in zip(mailboxes, tmp_files, strict=True):
            name = tmp.name
            final = mailbox / "new" / name
            os.rename(tmp, final)  # never replaces: the name is unique to this process
            delivery.tmp_files.remove(tmp)
            delivery.new_files.append(final)
            delivery.directories.add(mailbox / "new")
            finals.append(final)
        return finals

    def _write_tmp_files(
        self, mailboxes: list[Path], name: str, chunks: list[Part], delivery: _Delivery
    ) -> list[Path]:
        """The message in every mailbox's ``tmp/``: written once, then hard-linked (or copied)."""
        tmp_files: list[Path] = []
        for mailbox in mailboxes:
            if mailbox not in self._ready:
                self._ensure_maildir(mailbox)
                self._ready.add(mailbox)
            tmp = mailbox / "tmp" / name
            if tmp_files:
                _link_or_copy(tmp_files[0], tmp, chunks, delivery)
            else:
                delivery.unsynced.append((tmp, write_unsynced_file(tmp, chunks)))
            delivery.tmp_files.append(tmp)
            tmp_files.append(tmp)
        return tmp_files

    def _ensure_maildir(self, mailbox: Path) -> None:
        ensure_maildir(mailbox)


def ensure_maildir(mailbox: Path) -> None:
    """Create ``tmp/ new/ cur/`` (mode 0700) when missing; new entries are fsync'd. A Maildir++
    subfolder (``.Name``) gets its parent maildir first and the ``maildirfolder`` marker."""
    if all((mailbox / sub).is_dir() for sub in _MAILDIR_SUBDIRS):
        return
    if mailbox.name.startswith("."):  # a Maildir++ subfolder: its parent maildir first
        ensure_maildir(mailbox.parent)
    make_private_dir(mailbox)
    for sub in _MAILDIR_SUBDIRS:
        make_private_dir(mailbox / sub)
    if mailbox.name.startswith("."):
        marker = mailbox / "maildirfolder"  # Maildir++: marks a subfolder (Courier, Dovecot)
        with contextlib.suppress(FileExistsError):  # a concurrent delivery made it
            write_new_file(marker, [b""])


def _link_or_copy(source: Path, target: Path, chunks: list[Part], delivery: _Delivery) -> None:
    """Hard-link ``source`` to ``target``; on another file system write a copy (fsync'd with the batch)."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        delivery.unsynced.append((target, write_unsynced_file(target, chunks)))


def write_unsynced_file(path: Path, chunks: list[Part]) -> int:
    """Create ``path`` (it must not exist) with ``chunks`` and return its open descriptor; the
    batch fsyncs and closes it before any rename.

    On error the partly written file is closed and removed before the error propagates.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, chunks)
    except BaseException:
        os.close(fd)
        remove_quietly(path)
        raise
    return fd


def fsync_file(path: Path, fd: int) -> None:
    """fsync the data and metadata of ``path``, a file written earlier in this batch, open as ``fd``."""
    os.fsync(fd)
