"""A session's message in progress: its incoming file, the per-process cap and full-disk replies.

The SMTP core calls :meth:`MessageIntake.open` for each new message (its content sink); the
session asks :meth:`MessageIntake.wait_writable` before each socket read (back-pressure),
:meth:`MessageIntake.content` at the end of the data, and :meth:`MessageIntake.release` after each
reply, which removes the file once the core is no longer reading a message. See
:mod:`hardmail.delivery.incoming` for the files and the cap.
"""

from __future__ import annotations

from collections.abc import Callable

from hardmail.core.diskfull import is_disk_full
from hardmail.core.replies import DISK_FULL, INSUFFICIENT_STORAGE, Reply
from hardmail.delivery.content import MessageContent
from hardmail.delivery.incoming import IncomingFile, IncomingStore, OverCap
from hardmail.ops.log import EventLogger


class MessageIntake:
    def __init__(self, store: Callable[[], IncomingStore], log: EventLogger) -> None:
        self._store = store  # the process's store, looked up when a message first needs it
        self.log = log
        self.current: IncomingFile | None = None  # the file of the message being received

    @property
    def store(self) -> IncomingStore:
        return self._store()

    def refusal(self, command: str) -> Reply | None:
        """452 4.3.1 when this process already receives ``max_bytes_in_flight`` (RFC 5321 4.5.3.1.10)."""
        if not self.store.full:
            return None
        return self._over_cap(command)

    def _over_cap(self, command: str) -> Reply:
        self.log.event("smtp.storage", level="warning", command=command, in_flight=self.store.in_flight,
                       limit=self.store.max_bytes_in_flight, code="4.3.1")
        return INSUFFICIENT_STORAGE

    def open(self) -> IncomingFile | Reply:
        """The core's content sink for a new message, or the refusal (DATA was checked before 354)."""
        refusal = self.refusal("BDAT")
        if refusal is not None:
            return refusal
        self.current = self.store.open()
        return self.current

    async def wait_writable(self) -> None:
        if self.current is not None:
            await self.current.wait_writable()  # the socket waits for the disk

    async def release(self, in_progress: bool = False) -> None:
        """Remove the incoming file unless the core is still reading its message."""
        incoming = self.current
        if incoming is not None and not in_progress:
            self.current = None
            await incoming.discard()

    @property
    def head_complete(self) -> bool:
        """The head holds the whole header block (it was not longer than ``max_header_size``)."""
        return self.current is not None and not self.current.head_too_big

    async def content(self) -> MessageContent | Reply:
        """The message once all of it is in its file (or memory), or 452 4.3.1 for a full disk."""
        assert self.current is not None
        try:
            return await self.current.finish()
        except OverCap:  # started under the cap, went over it while it streamed in
            return self._over_cap("end of data")
        except OSError as exc:
            return self.write_failure(exc, "incoming")

    def write_failure(self, exc: Exception, stage: str) -> Reply:
        """452 4.3.1 for a full disk (RFC 3463 X.3.1), logged; any other error goes on up."""
        if not is_disk_full(exc):
            raise exc
        self.log.event("smtp.disk_full", level="error", stage=stage, error=type(exc).__name__, code="4.3.1",
                       hint="the disk holding the data directory (or the database) is full")
        return DISK_FULL
