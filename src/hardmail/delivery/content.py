"""A received message as the server holds it after the end of DATA: a bounded head in memory and
the rest in a file.

The head is the header block up to and including the empty line that ends it (RFC 5322 2.1), at
most ``[smtp] max_header_size`` bytes; header checks, header removal and added fields work on it
alone. The rest of a big message stays in its file in ``<data_dir>/incoming/`` and is copied by
the kernel into the spool and the Maildirs (:func:`hardmail.delivery.durable.write_all`); the rest
of a small one (at most ``incoming.SPILL_SIZE``) never left memory. Only the few checks that need
every byte (DKIM and ARC verification, DKIM signing) call :meth:`read`, in a worker thread.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace

from hardmail.delivery.durable import FileRange, Part


@dataclass(frozen=True, slots=True)
class MessageContent:
    head: bytes  # the header block with its empty line (all of a message that has no body)
    rest: FileRange | None = None  # everything after the head (and after ``body``), on disk
    # for a small message, everything after the head in memory; with ``rest``, the bytes between
    # the head and ``rest`` (the start of a body changed in memory: impersonation_hook)
    body: bytes = b""

    @classmethod
    def in_memory(cls, message: bytes) -> MessageContent:
        """A message held in memory (tests, notices): the whole of it as the head."""
        return cls(message)

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body) + (self.rest.length if self.rest else 0)

    def with_head(self, head: bytes) -> MessageContent:
        """The same message with another head (fields added or removed)."""
        return replace(self, head=head)

    def parts(self) -> list[Part]:
        """What to write, in order: the head, then the body or the file range."""
        parts: list[Part] = [self.head]
        if self.body:
            parts.append(self.body)
        if self.rest is not None and self.rest.length:
            parts.append(self.rest)
        return parts

    def read(self) -> bytes:
        """The whole message in memory: call only from a worker thread (it reads the file)."""
        if self.rest is None or not self.rest.length:
            return self.head + self.body
        fd = os.open(self.rest.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            body = os.pread(fd, self.rest.length, self.rest.offset)  # one call: a regular file
        finally:
            os.close(fd)
        if len(body) != self.rest.length:
            raise OSError(errno.EIO, "the message file is shorter than received")
        return self.head + self.body + body
