"""Messages in progress: DATA and BDAT content streamed to a file per message as it arrives.

The SMTP core hands each unstuffed piece to :meth:`IncomingFile.write` (never blocks: the piece is
queued). A message that stays within SPILL_SIZE never touches the disk here (most mail: no extra
file per message); once it is larger, one task per message writes the queue in batches in a
worker thread (``asyncio.to_thread``), so no file system call runs on the event loop. The session
stops reading its socket while more than WRITE_BUFFER bytes wait
(:meth:`IncomingFile.wait_writable`), so memory per message is bounded by that buffer plus the
head (the header block, at most ``[smtp] max_header_size``), whatever the message's size.

Files are ``<data_dir>/incoming/<pid>-<random>``, mode 0600, not fsync'd (the 250 waits for the
copies in the spool and the Maildirs, which are); each is removed when its message is accepted or
refused, on RSET, and when the session ends. Files left by a process that died are removed at the
next start (:func:`clear_leftovers`).

:class:`IncomingStore` counts the bytes of every message this process is receiving (``[smtp]
max_bytes_in_flight``): over it, a new message gets ``452 4.3.1`` before its content is read
(RFC 5321 4.5.3.1.10, RFC 3463 3.4). Messages that started under the cap may still take the
process over it while they stream in: the piece that does so is the last one stored for that
message, which is refused at its end (:class:`OverCap`), so bytes in flight exceed the cap by at
most one piece per message, however many sessions started their messages at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from pathlib import Path

from hardmail.delivery.content import MessageContent
from hardmail.delivery.durable import FileRange, make_private_dir, remove_quietly, write_all

WRITE_BUFFER = 1024 * 1024  # content bytes a session may hold while its file writes catch up
SPILL_SIZE = 256 * 1024  # a message larger than this goes to its file; a smaller one stays in memory
class OverCap(Exception):
    """The message took the process over ``[smtp] max_bytes_in_flight`` while it streamed in."""


class IncomingStore:
    """The incoming directory of one process and the bytes in flight in it."""

    def __init__(self, directory: Path, max_bytes_in_flight: int, max_header_size: int) -> None:
        self.directory = Path(directory)
        self.max_bytes_in_flight = max_bytes_in_flight
        self.max_header_size = max_header_size
        self.in_flight = 0  # bytes taken by the messages being received now
        self.open_files = 0
        self._idle_waiters: list[asyncio.Future[None]] = []

    @property
    def full(self) -> bool:
        """True when no new message may start (its content would go over the cap)."""
        return self.in_flight >= self.max_bytes_in_flight

    def open(self) -> IncomingFile:
        return IncomingFile(self)

    async def wait_idle(self) -> None:
        """Return once no message is being received (every incoming file is removed)."""
        if self.open_files:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def _closed_one(self) -> None:
        self.open_files -= 1
        if not self.open_files:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class IncomingFile:
    """One message in progress: its head in memory, all of its content queued for its file."""

    def __init__(self, store: IncomingStore) -> None:
        self.store = store
        self.path = store.directory / f"{os.getpid()}-{secrets.token_hex(8)}"
        self.size = 0
        self.head = bytearray()
        self.head_done = False
        self.head_too_big = False  # no end of the header block within max_header_size
        self.error: OSError | None = None
        self.over_cap = False  # its content took the process over the cap: refused at its end
        self._pending: list[bytes] = []
        self._buffered = 0  # bytes taken but not yet written (queued or being written)
        self._counted = 0  # bytes added to store.in_flight
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()
        self._abandoned = False
        self._closed = False
        self._spilled = False  # the content goes to the file (else it is small and stays in memory)
        # The descriptor is shared with the writer thread: it is never closed while that thread
        # writes to it (the number could be reused by another file, which would get these bytes).
        self._fd_lock = threading.Lock()
        self._writing = False
        store.open_files += 1

    # ----- the ContentSink side (called by the SMTP core; never blocks) -----------------
    def write(self, piece: bytes) -> None:
        if self._abandoned:
            return
        self._take_head(piece)
        self.size += len(piece)
        if self.error is not None or self.head_too_big or self.over_cap:
            return  # the message will be refused: keep counting, store nothing more
        self._pending.append(piece)
        self._buffered += len(piece)
        self._counted += len(piece)
        self.store.in_flight += len(piece)
        if self.store.in_flight > self.store.max_bytes_in_flight:
            self.over_cap = True  # this piece stays counted (new messages wait) until discard
        if self.size > SPILL_SIZE:
            self._spilled = True
        if self._spilled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_queue())

    def abandon(self) -> None:
        """The core refused the message: drop what is queued (the file goes at :meth:`discard`)."""
        self._abandoned = True
        self._pending.clear()

    def _take_head(self, piece: bytes) -> None:
        """Keep the header block: up to the first empty line (RFC 5322 2.1)."""
        if self.head_done:
            return
        limit = self.store.max_header_size
        seen = len(self.head)
        self.head += piece[: limit - seen]
        if self.head[:2] == b"\r\n":  # no header fields at all
            del self.head[2:]
            self.head_done = True
            return
        end = self.head.find(b"\r\n\r\n", max(seen - 3, 0))
        if end >= 0:
            del self.head[end + 4:]
            self.head_done = True
        elif len(self.head) >= limit:
            self.head_done = self.head_too_big = True

    # ----- writing -----------------------------------------------------------------------
    async def _write_queue(self) -> None:
        try:
            while self._pending and not self._abandoned:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write_batch, batch)
                except OSError as exc:
                    self.error = exc
                    self._pending.clear()
                self._buffered -= sum(len(piece) for piece in batch)
                self._progress.set()
        finally:
            self._task = None
            self._progress.set()

    def _write_batch(self, batch: list[bytes]) -> None:
        """Write one batch (in a worker thread); a file discarded meanwhile is closed and removed here."""
        with self._fd_lock:
            if self._closed:  # discarded while this batch waited for a thread (server stop)
                return
            if self._fd is None:
                make_private_dir(self.path.parent)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fd, self._writing = self._fd, True
        try:
            write_all(fd, batch)
        finally:
            with self._fd_lock:
                self._writing = False
                if self._closed:
                    self._close_and_unlink()

    async def wait_writable(self, bound: int = WRITE_BUFFER) -> None:
        """Back-pressure: return once at most ``bound`` bytes wait to be written."""
        while self._buffered > bound and self._task is not None:
            self._progress.clear()
            await self._progress.wait()

    async def finish(self) -> MessageContent:
        """Wait until every piece is in the file; the message as head + file range.

        Raises the OSError a write met (ENOSPC, EDQUOT, EIO, ...), or OverCap."""
        while self._task is not None:
            self._progress.clear()
            await self._progress.wait()
        if self.error is not None:
            raise self.error
        if self.over_cap:
            raise OverCap(f"over the {self.store.max_bytes_in_flight} bytes in flight")
        head = bytes(self.head)
        rest = self.size - len(head)
        if not self._spilled:
            return MessageContent(head, body=b"".join(self._pending)[len(head):])
        return MessageContent(head, FileRange(str(self.path), len(head), rest) if rest else None)

    async def discard(self) -> None:
        """Drop the message: wait for a write in flight, then close and remove the file."""
        self.abandon()
        if self._closed:
            return
        try:
            while self._task is not None:
                self._progress.clear()
                await self._progress.wait()
            await asyncio.to_thread(self._remove_file)  # unlinking a big file frees many blocks
        finally:
            self._closed = True
            self._remove_file()  # at once when cancelled (server stop); a no-op otherwise
            self.store.in_flight -= self._counted
            self._counted = 0
            self.store._closed_one()

    def _remove_file(self) -> None:
        with self._fd_lock:
            if self._writing:  # cancelled mid-write: the writer thread closes it when its write ends
                remove_quietly(self.path)
            else:
                self._close_and_unlink()

    def _close_and_unlink(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            remove_quietly(self.path)


def clear_leftovers(directory: Path) -> list[str]:
    """Remove files of messages that a stopped process was receiving (at server start, before
    any worker takes mail); returns their names.

    Called before this process receives anything, so files named with its own pid are leftovers
    too: a server restarted in a container often gets the pid (1) its killed predecessor had."""
    if not directory.is_dir():
        return []
    removed = []
    for path in directory.iterdir():
        pid, dash, _rest = path.name.partition("-")
        if dash and pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            remove_quietly(path)
            removed.append(path.name)
    return sorted(removed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
