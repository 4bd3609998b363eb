"""The log file: created private whatever the umask, reopened after logrotate, looser modes reported.

hardmail creates the log file with mode 0600, or 0640 with the group ``logging.file_group`` when
one is set (for a fail2ban or a log shipper that runs as another user), and every directory it
creates on the way with 0700 (0750 with the group). The mode is set with ``fchmod`` after the
open, so no umask (not even 000) can widen it. An existing file (one an older version made 0644,
or logrotate's ``create``) is narrowed to that mode when hardmail opens it, with a warning line.
A directory that already exists keeps its mode: when other users can write to it (and so
replace the file or inject lines that a fail2ban would trust), ``loose_modes`` says so, for
``config check``, the start-up output and, through ``WatchedFile.take_notices``, a warning line
in the log itself.

What is found at the path is opened only when it is a regular file of hardmail's user (or root)
with one name: a symbolic link, FIFO, hard link or another user's file planted there (in a
directory others can write to, or after a rotation) is refused, so that nobody can redirect the
log's writes or read it. At start that stops the server with a one-line reason; after a rotation
the lines keep going to the file already open, with a warning, until the path is fixed.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PRIVATE_FILE_MODE = 0o600
GROUP_FILE_MODE = 0o640
PRIVATE_DIR_MODE = 0o700
GROUP_DIR_MODE = 0o750
_NEVER_IN_DIR = 0o022  # group or other write: they could replace the file or plant one after a rotation


class LogFileError(OSError):
    """The log file cannot be set up as configured; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class FileAccess:
    """Modes (and group) for what hardmail creates."""

    file_mode: int = PRIVATE_FILE_MODE
    dir_mode: int = PRIVATE_DIR_MODE
    gid: int | None = None


def access_for(group: str) -> FileAccess:
    """0600/0700 without a group; 0640/0750 and the group's id with one."""
    if not group:
        return FileAccess()
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise LogFileError(f"logging.file_group: there is no group named {group!r} on this machine") from None
    return FileAccess(GROUP_FILE_MODE, GROUP_DIR_MODE, gid)


def loose_modes(path: Path, group: str = "") -> list[str]:
    """Sentences about an existing log file or its directory whose mode lets other users in."""
    allowed_file = GROUP_FILE_MODE if group else PRIVATE_FILE_MODE
    try:
        problem = _problem(os.lstat(path))
    except OSError:
        problem = None
    if problem is not None:  # serve would refuse it: say so before
        return [_refusal(path, problem) + ".", *loose_directory(path, group)]
    file_mode = _mode_of(path)
    found = []
    if file_mode is not None and file_mode & ~allowed_file:
        found.append(file_mode_warning(path, file_mode, allowed_file))
    return found + loose_directory(path, group)


def loose_directory(path: Path, group: str = "") -> list[str]:
    """Sentences about the log file's directory when other users can write to it or own it."""
    found = []
    dir_owner = _owner_of(path.parent)
    if dir_owner is not None and dir_owner not in (os.geteuid(), 0):
        found.append(f"the directory {path.parent} of logging.file belongs to another user (uid {dir_owner}), "
                     "who can replace the log file or read it; use a directory of hardmail's own.")
    dir_mode = _mode_of(path.parent)
    if dir_mode is not None and dir_mode & _NEVER_IN_DIR:
        found.append(
            f"the directory {path.parent} of logging.file has mode {dir_mode:04o}: other users can "
            "replace the log file or create one after a rotation, and fail2ban would trust its lines; "
            f"use a directory of hardmail's own (chmod {GROUP_DIR_MODE if group else PRIVATE_DIR_MODE:o}).")
    return found


def file_mode_warning(path: Path, mode: int, allowed: int) -> str:
    return (f"logging.file {path} has mode {mode:04o}: other users can read the log (addresses, "
            f"sessions) or write fake lines for fail2ban; hardmail narrows it to {allowed:o} when it opens "
            f"it, or run chmod {allowed:o} {path}"
            + ("" if allowed == GROUP_FILE_MODE else " (or set logging.file_group for a reader group)") + ".")


def narrowed_warning(path: Path, before: int, after: int) -> str:
    return (f"logging.file {path} had mode {before:04o}, which let other users read the log or write "
            f"to it; hardmail set it to {after:04o}.")


def _owner_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_uid
    except OSError:
        return None


def _mode_of(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None


def make_directories(directory: Path, access: FileAccess) -> None:
    """Create ``directory`` and its missing parents with ``access.dir_mode`` (umask ignored)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for created in reversed(missing):
        try:
            os.mkdir(created, access.dir_mode)
        except FileExistsError:
            continue  # made by someone else meanwhile: its mode is theirs
        os.chmod(created, access.dir_mode)
        if access.gid is not None:
            _set_group(created, access.gid)


def _set_group(path: Path | int, gid: int) -> None:
    try:
        if isinstance(path, int):
            os.fchown(path, -1, gid)
        else:
            os.chown(path, -1, gid)
    except PermissionError:
        raise LogFileError(f"logging.file_group: hardmail's user may not give its log file to group id {gid} "
                           "(the user must be a member of that group)") from None


def open_log_file(path: Path, access: FileAccess) -> tuple[TextIO, int | None]:
    """Open ``path`` for appending; create it with ``access``'s mode and group when it is missing.

    Returns the stream and, for a file that already existed, its mode (else None). What is found
    at the path must be a regular file of hardmail's user (or root) with no other name: a symbolic
    link (``O_NOFOLLOW``), a FIFO (``O_NONBLOCK``: opening one would block), a device, a hard link
    or another user's file, which someone who can write to the directory could have put there to
    read the log or have hardmail's writes go elsewhere, is refused with ``LogFileError``."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, access.file_mode)
        except FileExistsError:
            try:
                fd = _open_existing(path, flags)
            except FileNotFoundError:
                continue  # removed between the two opens (a rotation): create it after all
            existing: int | None = _narrow(fd, access)
            break
        try:
            os.fchmod(fd, access.file_mode)  # the umask narrowed or (000) did not touch os.open's mode
            if access.gid is not None:
                _set_group(fd, access.gid)
        except BaseException:
            os.close(fd)
            raise
        existing = None
        break
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8"), existing


def _open_existing(path: Path, flags: int) -> int:
    """The descriptor of the existing log file, once it is known to be one hardmail may write to."""
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symbolic link; a FIFO nobody reads
            raise LogFileError(_refusal(path, "a symbolic link" if exc.errno == errno.ELOOP else "a FIFO")) from None
        raise
    problem = _problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise LogFileError(_refusal(path, problem))
    return fd


def _problem(info: os.stat_result) -> str | None:
    """Why what is at the log path (its ``lstat``) is not a file hardmail may write its log to."""
    if stat.S_ISLNK(info.st_mode):
        return "a symbolic link"
    if stat.S_ISFIFO(info.st_mode):
        return "a FIFO"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid not in (os.geteuid(), 0):
        return f"owned by another user (uid {info.st_uid})"
    if info.st_nlink != 1:
        return f"a file with {info.st_nlink} names (a hard link)"
    return None


def _narrow(fd: int, access: FileAccess) -> int:
    """Take from the existing file (one of an older version, or logrotate's ``create 0644``)
    what ``access`` does not allow: the log is private whoever made the file. Returns the mode
    it had. A root-owned file of another user than root keeps its mode (and is reported)."""
    info = os.fstat(fd)
    before = stat.S_IMODE(info.st_mode)
    narrowed = before & access.file_mode
    if access.gid is not None and info.st_gid != access.gid and narrowed & 0o070:
        try:
            _set_group(fd, access.gid)
        except LogFileError:
            narrowed &= 0o700  # the group it has is not the readers' group
    if narrowed != before:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, narrowed)
    return before


def _refusal(path: Path, problem: str) -> str:
    return (f"logging.file {path} is {problem}: hardmail will not write its log there (someone who can "
            "write to its directory may have put it there); remove it, and use a directory of hardmail's own")


class WatchedFile:
    """Appends to a file and reopens it, as WatchedFileHandler does, when it was moved or deleted
    (logrotate); the check is one ``os.lstat`` per write, and a write carries a whole batch. A file
    created again gets the same mode; one found in place (logrotate's ``create``) with a looser mode
    leaves a notice for the handler to write."""

    def __init__(self, path: Path, access: FileAccess, group: str = "") -> None:
        self._path = path
        self._access = access
        self._allowed = GROUP_FILE_MODE if group else PRIVATE_FILE_MODE
        self._notices: list[str] = []
        self._stream: TextIO | None = None
        self._identity: tuple[int, int] | None = None
        self._refused: tuple[int, int] | None = None  # what is at the path and was refused
        make_directories(path.parent, access)
        self._notices = loose_directory(path, group)  # at start; the file's own mode is seen when opened
        self._open()

    def write(self, text: str) -> None:
        stream = self._stream
        found = _file_identity(self._path)
        if stream is None or (found != self._identity and (found is None or found != self._refused)):
            stream = self._reopen(found)
        stream.write(text)
        stream.flush()

    def _reopen(self, found: tuple[int, int] | None) -> TextIO:
        """The file now at the path (after a rotation). When what is there is refused (a symbolic
        link or another user's file, see ``open_log_file``), the lines keep going to the file open
        so far, with a notice, until something else is put at the path."""
        old = self._stream
        try:
            stream, existing = open_log_file(self._path, self._access)
        except LogFileError as exc:
            if old is None:
                raise
            self._refused = found
            self._notices.append(str(exc))
            with contextlib.suppress(Exception):  # the rotated file may be deleted soon: say it where it stays
                sys.stderr.write(f"hardmail: {exc}\n")
            return old
        self.close()
        return self._adopt(stream, existing)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def take_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    def _open(self) -> TextIO:
        return self._adopt(*open_log_file(self._path, self._access))

    def _adopt(self, stream: TextIO, existing: int | None) -> TextIO:
        self._stream = stream
        info = os.fstat(stream.fileno())
        self._identity = (info.st_dev, info.st_ino)
        self._refused = None
        if existing is not None and existing & ~self._allowed:
            now = stat.S_IMODE(info.st_mode)
            self._notices.append(narrowed_warning(self._path, existing, now) if not now & ~self._allowed
                                 else file_mode_warning(self._path, now, self._allowed))
        return stream


def _file_identity(path: Path) -> tuple[int, int] | None:
    """What is at ``path`` itself (``lstat``: a symbolic link put there is not its target)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino
