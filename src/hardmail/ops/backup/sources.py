"""What goes into a backup: the files of the data directory (walked once with ``os.scandir``; the
type of each entry comes from the directory itself, so a full backup needs no ``stat`` before it
reads a file), sorted into Maildir message files, outbound spool files and other files; the TLS
files configured outside the data directory; and the identity by which an incremental backup
recognises a file it already holds.

Never stored (the issue's list): ``incoming/`` and ``run/`` (work in progress and status files),
``hardmail.lock``, the SQLite database files ``hardmail.db*`` (the snapshot replaces them),
``backup-state/``, the backup destination when it is inside the data directory (and the default
one, ``backups/``, whatever the destination), and ``tmp/`` of each Maildir. Also left out: the
folder lock files (``hardmail.lock`` of each folder), trash of a folder being deleted
(``..DELETED-*``), half-written spool files (``.tmp-*``), the configured log file when it is
inside the data directory (it grows while it is read), anything that is not a regular file
(symbolic links, sockets; counted), and dot files inside ``cur/``/``new/``.

Layout of the mail (see :mod:`hardmail.delivery.maildir` and :mod:`hardmail.mailbox.names`):
``mail/<domain>/<local part>/`` is the account's INBOX (``cur/ new/ tmp/``) and every other folder
is a Maildir++ directory ``.<name>`` beside them. A message file's identity is (folder directory,
base name before ``:2,``, size): message files never change content, a flag change only renames
them. Any other file's identity is (path, size, mtime_ns).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hardmail.config.schema import Config
from hardmail.mailbox.files import INFO_SEPARATOR, LOCK_FILE
from hardmail.mailbox.folders import TRASH_PREFIX
from hardmail.ops.backup.manifest import FileEntry

FILES_PREFIX = "files/"
MESSAGE, SPOOL, OTHER = "message", "spool", "other"
MAIL_DIR, SPOOL_DIR, QUEUE_DIR = "mail", "spool", "queue"
_NEVER_STORED = frozenset({"incoming", "run", "hardmail.lock", "backup-state"})
_SPOOL_SUFFIXES = (".eml", ".json")
_SPOOL_TMP_PREFIX = ".tmp-"
_MESSAGE_DIRS = ("new", "cur")
_MAILDIR_ORDER = {"new": 0, "cur": 1}  # new/ first: a file a sync moves to cur/ meanwhile is met twice, never missed
ALWAYS_STORED = frozenset({"server.key"})  # the TOTP/app-password key: every archive stores it anew
Identity = tuple[str, str, str | int, int]


@dataclass(slots=True)
class SourceFile:
    """One file of the data directory. ``rel`` is its path relative to the data directory
    (``/``-separated); for a message ``folder`` is the folder directory (relative) and ``base`` the
    base name; for a spool file ``base`` is the queue id. The walk does not ``stat`` files (a full
    backup learns size, mode and time from the ``fstat`` of the read): ``size`` is -1 until
    :meth:`load_stat`."""

    rel: str
    kind: str = OTHER
    folder: str = ""
    base: str = ""
    in_new: bool = False
    size: int = -1
    mode: int = 0
    mtime_ns: int = 0
    previous: FileEntry | None = None  # an incremental backup: the parent's entry of the same identity
    compared: bool = False  # whether ``previous`` was looked for

    @property
    def member(self) -> str:
        return FILES_PREFIX + self.rel

    def load_stat(self, root: str) -> bool:
        """Size, mode and time from ``lstat`` (``root``: the data directory with a trailing ``/``);
        False when the file is gone or is no longer a regular file."""
        if self.size >= 0:
            return True
        try:
            info = os.lstat(root + self.rel)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode):
            return False
        self.size, self.mode, self.mtime_ns = info.st_size, stat.S_IMODE(info.st_mode), info.st_mtime_ns
        return True

    def identity(self) -> Identity:
        """Its identity for an incremental backup (after :meth:`load_stat`)."""
        if self.kind == MESSAGE:
            return ("m", FILES_PREFIX + self.folder, self.base, self.size)
        return ("f", FILES_PREFIX + self.rel, self.size, self.mtime_ns)


@dataclass
class WalkResult:
    files: list[SourceFile] = field(default_factory=list)
    not_regular: int = 0  # symbolic links, sockets, devices: not stored


def walk(data_dir: Path, excluded: Iterable[str] = ()) -> WalkResult:
    """Every file of ``data_dir`` a backup stores. ``excluded``: more paths relative to the data
    directory (files or whole directories) to leave out, e.g. a destination inside it."""
    walker = _Walker(str(data_dir), frozenset(excluded))
    for entry in _scan(walker.root):
        if entry.name in _NEVER_STORED or entry.name.startswith("hardmail.db") or entry.name in walker.skip:
            continue
        if entry.name == MAIL_DIR and entry.is_dir(follow_symlinks=False):
            walker.mail(entry.path)
        elif entry.name == SPOOL_DIR and entry.is_dir(follow_symlinks=False):
            walker.tree(entry.path, SPOOL_DIR, spool=True)
        else:
            walker.visit(entry, entry.name)
    return walker.result


def _scan(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):  # removed while we walk
        return []


class _Walker:
    def __init__(self, root: str, skip: frozenset[str]) -> None:
        self.root = root
        self.skip = skip
        self.result = WalkResult()

    def add(self, entry: os.DirEntry[str], rel: str, kind: str = OTHER, folder: str = "", base: str = "",
            in_new: bool = False) -> None:
        if not entry.is_file(follow_symlinks=False):  # the directory entry's type: no stat
            self.result.not_regular += 1
            return
        self.result.files.append(SourceFile(rel, kind, folder, base, in_new))

    def visit(self, entry: os.DirEntry[str], rel: str, spool: bool = False) -> None:
        if rel in self.skip:
            return
        if entry.is_dir(follow_symlinks=False):
            self.tree(entry.path, rel, spool)
        else:
            self.add(entry, rel)

    def tree(self, path: str, rel: str, spool: bool = False) -> None:
        for entry in _scan(path):
            child = f"{rel}/{entry.name}"
            if spool and rel == f"{SPOOL_DIR}/{QUEUE_DIR}" and not entry.is_dir(follow_symlinks=False):
                self.spool_file(entry, child)
            else:
                self.visit(entry, child, spool)

    def spool_file(self, entry: os.DirEntry[str], rel: str) -> None:
        if entry.name.startswith(_SPOOL_TMP_PREFIX):
            return  # a write in progress (or abandoned): spool.recover's business
        stem, dot, suffix = entry.name.rpartition(".")
        if dot and f".{suffix}" in _SPOOL_SUFFIXES and stem:
            self.add(entry, rel, SPOOL, base=stem)
        else:
            self.add(entry, rel)

    def mail(self, path: str) -> None:
        """``mail/<domain>/<local part>/``: each account directory is a Maildir (INBOX)."""
        for domain in _scan(path):
            rel = f"{MAIL_DIR}/{domain.name}"
            if not domain.is_dir(follow_symlinks=False):
                self.visit(domain, rel)
                continue
            for account in _scan(domain.path):
                child = f"{rel}/{account.name}"
                if account.is_dir(follow_symlinks=False) and child not in self.skip:
                    self.maildir(account.path, child, inbox=True)
                else:
                    self.visit(account, child)

    def maildir(self, path: str, rel: str, inbox: bool) -> None:
        entries = sorted(_scan(path), key=lambda e: _MAILDIR_ORDER.get(e.name, 2))
        for entry in entries:
            name, child = entry.name, f"{rel}/{entry.name}"
            is_dir = entry.is_dir(follow_symlinks=False)
            if name in _MESSAGE_DIRS and is_dir:
                self.messages(entry.path, child, rel, in_new=name == "new")
            elif name == "tmp" or name.startswith(TRASH_PREFIX) or (name == LOCK_FILE and not is_dir):
                continue
            elif inbox and is_dir and name.startswith("."):
                self.maildir(entry.path, child, inbox=False)
            else:
                self.visit(entry, child)

    def messages(self, path: str, rel: str, folder: str, in_new: bool) -> None:
        for entry in _scan(path):
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                self.visit(entry, f"{rel}/{name}")
                continue
            self.add(entry, f"{rel}/{name}", MESSAGE, folder, name.partition(INFO_SEPARATOR)[0], in_new)


def folder_messages(data_dir: Path, folder: str) -> list[SourceFile]:
    """The message files of one folder directory (relative to ``data_dir``), new/ then cur/."""
    walker = _Walker(str(data_dir), frozenset())
    for sub in _MESSAGE_DIRS:
        walker.messages(os.path.join(walker.root, folder, sub), f"{folder}/{sub}", folder, in_new=sub == "new")
    return [found for found in walker.result.files if found.kind == MESSAGE]


# --- identities of entries already in a manifest ---------------------------------------------

def entry_identity(entry: FileEntry) -> Identity | None:
    """The identity of a manifest entry of a data-directory file (None for the database, the
    configuration and external files, which every archive stores anew)."""
    path = entry.path
    if not path.startswith(FILES_PREFIX) or path[len(FILES_PREFIX):] in ALWAYS_STORED:
        return None
    folder, _, name = path.rpartition("/")
    parent, _, sub = folder.rpartition("/")
    if path.startswith(FILES_PREFIX + MAIL_DIR + "/") and sub in _MESSAGE_DIRS and not name.startswith("."):
        return ("m", parent, name.partition(INFO_SEPARATOR)[0], entry.size)
    return ("f", path, entry.size, entry.mtime_ns)


def named_size(base: str) -> int | None:
    """The size a Maildir base name states (``...,S=1234``), or None."""
    _, found, digits = base.rpartition(",S=")
    if not found or not digits.isdigit():
        return None
    return int(digits)


def reusable_entries(entries: Iterable[FileEntry]) -> dict[Identity, FileEntry]:
    """Identity → entry, for the entries an incremental backup may take over."""
    found: dict[Identity, FileEntry] = {}
    for entry in entries:
        identity = entry_identity(entry)
        if identity is not None:
            found[identity] = entry
    return found


# --- outside the data directory --------------------------------------------------------------

def external_files(config: Config) -> list[tuple[str, Path]]:
    """(member, path) of the TLS certificate and key files the configuration names outside the
    data directory: ``external/<n>-<basename>``, numbered from 1 in configuration order."""
    data_dir = Path(config.data_dir).resolve()
    tls = config.tls
    named = [tls.cert_file, tls.key_file]
    for extra in tls.certificates:
        named += [extra.cert_file, extra.key_file]
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for path in named:
        if path is None:
            continue
        absolute = Path(path).expanduser().resolve()
        if absolute in seen or absolute.is_relative_to(data_dir):
            continue
        seen.add(absolute)
        found.append((f"external/{len(found) + 1}-{absolute.name}", absolute))
    return found


def relative_inside(path: Path, data_dir: Path) -> str | None:
    """``path`` relative to ``data_dir`` (resolved, ``/``-separated), None when it is outside."""
    try:
        return Path(path).resolve().relative_to(Path(data_dir).resolve()).as_posix()
    except ValueError:
        return None
