"""The Maildir++ side of the mailbox store: file names with their ``:2,`` flags, the folder lock,
writing, renaming and removing message files durably, and scanning a folder against its index.

Everything here is synchronous (async callers run it in a thread) and is called holding the
folder's lock (:func:`lock_folder`) when it changes files. The durability order of each change
is described in :mod:`hardmail.mailbox.service`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hardmail.delivery.durable import fsync_dir, write_new_file
from hardmail.delivery.maildir import UniqueNames, ensure_maildir
from hardmail.store.ports_mailbox import DirStamp, FlagUpdate, FolderChange, NewMessage, SyncEntry

LOCK_FILE = "hardmail.lock"
INFO_SEPARATOR = ":2,"
# Maildir spec "info" letters, in the (ASCII) order they are written
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
LETTER_FLAGS = {letter: flag for flag, letter in FLAG_LETTERS.items()}
SYSTEM_FLAGS = frozenset(FLAG_LETTERS)
_DELIVERY_TIME = re.compile(r"^(\d{1,12})\.M(\d{1,6})")
DIRTY = -1
DIRTY_NS = 2_000_000_000  # covers file systems with 1 or 2 s timestamps, and clock steps
TMP_MAX_AGE = 36 * 3600  # Maildir spec: tmp/ files older than 36 hours may be removed


def lock_folder(folder: Path) -> int:
    """Take the folder's exclusive lock (blocks); returns the descriptor to close to release it.
    The kernel releases it when the process dies, also on ``kill -9``."""
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def split_name(file_name: str) -> tuple[str, frozenset[str]]:
    """(base name, system flags) of a file in ``cur/`` or ``new/``; unknown info letters (e.g.
    another program's keyword letters) are ignored."""
    base, sep, info = file_name.partition(INFO_SEPARATOR)
    if not sep:
        return base, frozenset()
    return base, frozenset(LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS)


def cur_name(base: str, flags: Iterable[str]) -> str:
    return base + INFO_SEPARATOR + "".join(sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS))


def expected_path(folder: Path, base: str, flags: Iterable[str], in_new: bool) -> Path:
    return folder / "new" / base if in_new else folder / "cur" / cur_name(base, flags)


def find_file(folder: Path, base: str, flags: Iterable[str], in_new: bool) -> Path | None:
    """The message's file: where the index says it is, else wherever its base name is now."""
    first = expected_path(folder, base, flags, in_new)
    if first.exists():
        return first
    other = folder / "cur" / cur_name(base, flags) if in_new else folder / "new" / base
    if other.exists():
        return other
    for sub in ("cur", "new"):
        with contextlib.suppress(FileNotFoundError), os.scandir(folder / sub) as entries:
            for entry in entries:
                if entry.name == base or entry.name.startswith(base + ":"):
                    return Path(entry.path)
    return None


def settled(seen: DirStamp, now_ns: int, *, new: bool = True, cur: bool = True) -> DirStamp:
    """The stamp a scan may record: a scanned directory changed less than :data:`DIRTY_NS` before
    the scan may change again within the same timestamp tick without its mtime moving (as Dovecot,
    the scan is then repeated next time): its time is recorded as :data:`DIRTY`, which never
    matches. ``new``/``cur``: whether that directory was scanned."""
    def keep(mtime_ns: int, scanned: bool) -> int:
        return DIRTY if scanned and now_ns - mtime_ns < DIRTY_NS else mtime_ns
    return DirStamp(keep(seen.new_mtime_ns, new), keep(seen.cur_mtime_ns, cur))


def own_stamp(before: DirStamp, after: DirStamp, touched_new: bool) -> DirStamp:
    """The stamp an own change records: cur/'s new time; new/'s old one when the change did not
    touch new/ (local delivery writes there without the folder lock, so its time is only ever
    taken by a scan), else :data:`DIRTY`, so that the next sync reads new/ (it is small)."""
    return DirStamp(DIRTY if touched_new else before.new_mtime_ns, after.cur_mtime_ns)


def stamp(folder: Path) -> DirStamp:
    return DirStamp(os.stat(folder / "new").st_mtime_ns, os.stat(folder / "cur").st_mtime_ns)


def delivery_order(base: str, mtime: float) -> tuple[int, int, str]:
    """Sort key of a new file: its delivery time from the name (Dovecot form), else its mtime."""
    found = _DELIVERY_TIME.match(base)
    if found:
        return int(found.group(1)), int(found.group(2)), base
    return int(mtime), 0, base


def new_message(path: Path, base: str, flags: frozenset[str], in_new: bool, size: int | None = None) -> NewMessage:
    """``size`` is that of the CRLF form (as served); for a file another program wrote with bare
    LF line ends it is computed by reading it."""
    info = os.stat(path)
    if size is None:
        size = served_size(path)
    return NewMessage(base, flags, datetime.fromtimestamp(int(info.st_mtime), UTC), size, in_new)


def served_size(path: Path) -> int:
    """The size of the file with every bare LF made CRLF, read by chunks."""
    size, previous = 0, b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            size += len(chunk) + chunk.count(b"\n") - chunk.count(b"\r\n") - (previous + chunk[:1] == b"\r\n")
            previous = chunk[-1:]
    return size


# own changes (each called holding the folder lock)


def write_message(folder: Path, names: UniqueNames, data: bytes, flags: frozenset[str],
                  internaldate: datetime | None) -> NewMessage:
    """tmp/ → fsync → cur/ → fsync cur/; the file's mtime is the INTERNALDATE (as Dovecot)."""
    base = names.next(len(data))
    tmp = folder / "tmp" / base
    write_new_file(tmp, data)
    try:
        if internaldate is not None:
            moment = internaldate.timestamp()
            os.utime(tmp, (moment, moment))
        final = folder / "cur" / cur_name(base, flags)
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(folder / "cur")
    return new_message(final, base, flags, False, len(data))


def rename_flags(folder: Path, entries: Sequence[SyncEntry], new_flags: dict[int, frozenset[str]]) -> list[int]:
    """Give each file its new ``:2,`` suffix (a file in new/ moves to cur/); fsyncs the directories
    touched. Returns the UIDs whose file was not found (gone behind our back)."""
    missing, touched = [], set()
    for entry in entries:
        flags = new_flags[entry.uid]
        target = folder / "cur" / cur_name(entry.name, flags)
        source = expected_path(folder, entry.name, entry.flags, entry.in_new)
        if source == target:
            continue
        try:
            os.rename(source, target)
        except FileNotFoundError:
            found = find_file(folder, entry.name, entry.flags, entry.in_new)
            if found is None:
                missing.append(entry.uid)
                continue
            source = found
            os.rename(source, target)
        touched.update({source.parent, target.parent})
    for directory in sorted(touched):
        fsync_dir(directory)
    return missing


def unlink_messages(folder: Path, entries: Sequence[SyncEntry]) -> None:
    """Remove the files (gone already is fine), then fsync the directories."""
    touched = set()
    for entry in entries:
        path = find_file(folder, entry.name, entry.flags, entry.in_new)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            touched.add(path.parent)
    for directory in sorted(touched):
        fsync_dir(directory)


def link_messages(src: Path, dest: Path, entries: Sequence[SyncEntry], names: UniqueNames,
                  move: bool) -> list[tuple[int, NewMessage]]:
    """Hard-link (copy across file systems) or rename each file into ``dest/cur`` under a new base
    name; fsyncs the directories. Returns (source UID, the new message) for the files found."""
    done = []
    for entry in entries:
        path = find_file(src, entry.name, entry.flags, entry.in_new)
        if path is None:
            continue
        base = entry.name if move else names.next(entry.size)
        target = dest / "cur" / cur_name(base, entry.flags)
        if move:
            os.rename(path, target)
        else:
            _link_or_copy(path, target, dest)
        info = os.stat(target)
        done.append((entry.uid, NewMessage(base, entry.flags, datetime.fromtimestamp(int(info.st_mtime), UTC),
                                           info.st_size)))
    fsync_dir(dest / "cur")
    if move:
        for sub in ("cur", "new"):
            fsync_dir(src / sub)
    return done


def _link_or_copy(path: Path, target: Path, dest: Path) -> None:
    try:
        os.link(path, target)
    except OSError:
        tmp = dest / "tmp" / target.name.partition(INFO_SEPARATOR)[0]
        write_new_file(tmp, path.read_bytes())
        info = os.stat(path)
        os.utime(tmp, (info.st_mtime, info.st_mtime))
        os.rename(tmp, target)


# scanning


@dataclass
class ScanResult:
    change: FolderChange
    scanned_cur: bool
    found: int = 0
    added: int = 0
    removed: int = 0
    renamed: int = 0
    canonicalized: int = 0  # files renamed to the canonical form of their name


def _list(directory: Path) -> dict[str, str]:
    """base name → file name; dot files skipped. A second file with the same base name (only a
    program other than hardmail can make one) is left alone."""
    files: dict[str, str] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            base, _flags = split_name(entry.name)
            files.setdefault(base, entry.name)
    return files


class NeedAllEntries(Exception):
    """A scan given only the new/ entries found that cur/ must be scanned too."""


def scan_folder(folder: Path, stored: DirStamp, entries: Sequence[SyncEntry], *, full: bool,
                partial: bool = False) -> ScanResult | None:
    """Compare ``new/`` and ``cur/`` (each only when its mtime changed, or ``full``) with the index
    entries; move new/ files to cur/ (as Dovecot); return the index change. Held: the folder lock.

    ``partial``: ``entries`` are only those in new/ (enough while cur/ is unchanged); raises
    :class:`NeedAllEntries` when cur/ must be compared after all."""
    before = stamp(folder)
    scan_new = full or before.new_mtime_ns != stored.new_mtime_ns
    scan_cur = full or before.cur_mtime_ns != stored.cur_mtime_ns
    if not (scan_new or scan_cur):
        return None
    if scan_cur and partial:
        raise NeedAllEntries
    new_files = _list(folder / "new") if scan_new else {}
    if not scan_cur and any(e.in_new and e.name not in new_files for e in entries):
        if partial:  # an indexed new/ file left new/ behind our back (or before a crash)
            raise NeedAllEntries
        scan_cur = True
    cur_files = _list(folder / "cur") if scan_cur else {}
    by_name = {entry.name: entry for entry in entries}
    result = ScanResult(FolderChange(), scan_cur, found=len(cur_files) + len(new_files))
    added: list[tuple[tuple[int, int, str], NewMessage]] = []
    updated: list[FlagUpdate] = []
    _compare_cur(folder, cur_files, by_name, added, updated, result)
    moved = _move_new(folder, new_files, cur_files, by_name, added, updated, result)
    removed = [e.uid for e in entries if e.name not in cur_files and e.name not in new_files
               and ((e.in_new and scan_new) or (not e.in_new and scan_cur)) and e.name not in moved]
    added.sort(key=lambda item: item[0])
    result.added, result.removed = len(added), len(removed)
    after = _stamp_after(folder, stored, before, bool(moved) or result.canonicalized > 0, scan_new, scan_cur)
    result.change = FolderChange(added=[m for _, m in added], updated=updated, removed=removed,
                                 stamp_after=after, force_stamp=True)
    return result


def _stamp_after(folder: Path, stored: DirStamp, before: DirStamp, moved: bool, scan_new: bool,
                 scan_cur: bool) -> DirStamp:
    """What the scan records: the times seen before listing, or after our own moves (fsync'd here)."""
    if moved:
        fsync_dir(folder / "cur")
        fsync_dir(folder / "new")
    after = stamp(folder) if moved else before
    if not scan_cur:
        after = DirStamp(after.new_mtime_ns, after.cur_mtime_ns if moved else stored.cur_mtime_ns)
    return settled(after, time.time_ns(), new=scan_new, cur=scan_cur)  # our own moves into cur/ are no scan


def _compare_cur(folder: Path, cur_files: dict[str, str], by_name: dict[str, SyncEntry],
                 added: list[tuple[tuple[int, int, str], NewMessage]], updated: list[FlagUpdate],
                 result: ScanResult) -> None:
    for base, listed in cur_files.items():
        _, disk_flags = split_name(listed)
        file_name = _canonical(folder, base, listed, disk_flags, result)
        if file_name is None:
            continue
        entry = by_name.get(base)
        if entry is None:
            path = folder / "cur" / file_name
            message = new_message(path, base, disk_flags, False)
            added.append((delivery_order(base, message.internaldate.timestamp()), message))
            continue
        flags = disk_flags | (entry.flags - SYSTEM_FLAGS)  # keywords live in the index only
        if flags != entry.flags or entry.in_new:
            updated.append(FlagUpdate(entry.uid, flags, in_new=False))
            result.renamed += flags != entry.flags


def _canonical(folder: Path, base: str, file_name: str, flags: frozenset[str], result: ScanResult) -> str | None:
    """Give a file with only standard info letters its canonical name (``:2,`` and the letters in
    order), so that it is found where the index expects it; None when it is gone. A name with other
    letters (another program's keywords) is left as it is."""
    canonical = cur_name(base, flags)
    info = file_name.partition(INFO_SEPARATOR)[2]
    if file_name == canonical or ":" in base or not set(info) <= set(LETTER_FLAGS):
        return file_name
    try:
        os.rename(folder / "cur" / file_name, folder / "cur" / canonical)
    except FileNotFoundError:
        return None
    result.canonicalized += 1
    return canonical


def _move_new(folder: Path, new_files: dict[str, str], cur_files: dict[str, str],
              by_name: dict[str, SyncEntry], added: list[tuple[tuple[int, int, str], NewMessage]],
              updated: list[FlagUpdate], result: ScanResult) -> set[str]:
    """Move every new/ file to cur/ with ``:2,`` and its flags; returns the base names moved."""
    moved: set[str] = set()
    for base, file_name in new_files.items():
        entry = by_name.get(base)
        flags = entry.flags if entry is not None else split_name(file_name)[1]
        target = folder / "cur" / cur_name(base, flags)
        if base in cur_files:
            continue  # the same message in both: the cur/ one counts, the new/ one stays for a re-index
        try:
            os.rename(folder / "new" / file_name, target)
        except FileNotFoundError:
            continue
        moved.add(base)
        if entry is None:
            message = new_message(target, base, flags, False)
            added.append((delivery_order(base, message.internaldate.timestamp()), message))
        elif entry.in_new:
            updated.append(FlagUpdate(entry.uid, entry.flags, in_new=False))
    return moved


def clean_tmp(folder: Path, now: float) -> int:
    """Remove ``tmp/`` files older than 36 hours (Maildir spec); returns how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(folder / "tmp") as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_file() and now - entry.stat().st_mtime > TMP_MAX_AGE:
                    os.unlink(entry.path)
                    removed += 1
    return removed


def ensure_folder(folder: Path) -> None:
    """The folder's ``cur/ new/ tmp/`` (and Maildir++ marker), created durably when missing."""
    ensure_maildir(folder)


def system(flags: Iterable[str]) -> frozenset[str]:
    """The flags that are written in the file name."""
    return SYSTEM_FLAGS.intersection(flags)


def stamps(*folders: Path) -> list[DirStamp]:
    return [stamp(folder) for folder in folders]


def remove_new(folder: Path, messages: Sequence[NewMessage]) -> None:
    """Take back files this process just wrote into ``cur/`` (their commit failed)."""
    with contextlib.suppress(FileNotFoundError):  # the folder itself may be gone (deleted meanwhile)
        for message in messages:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(expected_path(folder, message.name, message.flags, message.in_new))
        fsync_dir(folder / "cur")


def delivered_messages(folder: Path, paths: Sequence[Path]) -> list[NewMessage | None]:
    """The index records of files delivered to ``folder/new`` (found in cur/ when a sync moved
    them already); None for a file that is gone."""
    found: list[NewMessage | None] = []
    for path in paths:
        if path.parent.name not in ("new", "cur") or path.parent.parent.resolve() != folder.resolve():
            raise ValueError(f"{path} is not a message file of {folder}")
        base, flags = split_name(path.name)
        located = path if path.exists() else find_file(folder, base, flags, True)
        if located is None:
            found.append(None)
            continue
        with contextlib.suppress(FileNotFoundError):
            found.append(new_message(located, base, split_name(located.name)[1], located.parent.name == "new"))
            continue
        found.append(None)
    return found


def list_entries(directory: Path) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def remove_tree(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
