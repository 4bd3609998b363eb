"""Group commit for local delivery: deliveries that arrive together share one round of fsyncs.

Deliveries wait in a list; up to ``max_in_flight`` batches are written and fsync'd at once, each
in its own worker thread, and a committer that finishes takes everything that arrived meanwhile.
Batches in flight overlap one's file writes with another's fsync, and the file system merges
concurrent fsyncs into one journal commit. Each caller's
:meth:`GroupCommit.deliver` returns only after the batch holding its message has completed
:meth:`MaildirStore.deliver_batch` (every file fsync'd, renamed into ``new/``, directories
fsync'd), so a 250 is never sent before that message's own data is on disk (DESIGN.md data-safety
invariant). One thread hand-off per batch instead of one per message also spares the event loop.

A batch is all or nothing in the Maildir store; when it fails, each of its messages is delivered
again on its own, so that one bad message (or mailbox) fails only its own caller. The batches run
in a worker thread, or in a child process when a :class:`MaildirWriterProcess` is given (the server
does that: see :mod:`hardmail.delivery.maildir_writer` for why).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hardmail.delivery.durable import Part
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.maildir_writer import MaildirWriterProcess, Outcome, commit_requests

MAX_BATCH = 64  # messages per batch: bounds the latency one batch adds to the last caller in it
MAX_IN_FLIGHT = 2  # batches written and fsync'd concurrently


@dataclass(slots=True)
class _Request:
    addresses: Sequence[str]
    parts: Sequence[Part]  # bytes, or ranges of the message's incoming file (sent as a path)
    folder: str | None
    future: asyncio.Future[list[Path]]


class GroupCommit:
    """Batches concurrent :meth:`deliver` calls of one event loop into ``deliver_batch`` calls."""

    def __init__(self, maildir: MaildirStore, loop: asyncio.AbstractEventLoop, max_batch: int = MAX_BATCH,
                 max_in_flight: int = MAX_IN_FLIGHT, writer: MaildirWriterProcess | None = None) -> None:
        self.maildir = maildir
        self.loop = loop
        self.writer = writer
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[_Request] = []
        self._flushing = 0  # flush tasks running; each lowers it itself, in the turn it ends
        self._tasks: set[asyncio.Task[None]] = set()  # held so flush tasks are not garbage collected

    async def deliver(self, addresses: Sequence[str], parts: Sequence[Part], folder: str | None = None) -> list[Path]:
        """Like :meth:`MaildirStore.deliver`, sharing the fsyncs with concurrent callers."""
        future: asyncio.Future[list[Path]] = self.loop.create_future()
        self._waiting.append(_Request(addresses, parts, folder, future))
        if self._flushing < self.max_in_flight:
            self._flushing += 1
            task = self.loop.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:  # no await between this test and the count going down below
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch:]
                await self._commit(batch)
        finally:
            self._flushing -= 1

    async def _commit(self, batch: list[_Request]) -> None:
        # A caller that went away (its session stopped) removed its incoming file and never says
        # 250: storing its message would only fail the batch or deliver what the client resends.
        batch = [request for request in batch if not request.future.done()]
        if not batch:
            return
        requests = [(request.addresses, request.parts, request.folder) for request in batch]
        try:
            if self.writer is not None:
                outcomes = await self.writer.commit(requests)
            else:
                outcomes = await asyncio.to_thread(commit_requests, self.maildir, requests)
        except asyncio.CancelledError as exc:  # the server stops: the callers hear it, the task ends
            _settle(batch, [exc] * len(batch))
            raise
        except Exception as exc:  # the hand-off itself failed: every caller hears it
            outcomes = [exc] * len(batch)
        _settle(batch, outcomes)


def _settle(batch: list[_Request], outcomes: list[Outcome]) -> None:
    for request, outcome in zip(batch, outcomes, strict=True):
        if request.future.done():  # the caller went away (cancelled); the message is stored anyway
            continue
        if isinstance(outcome, BaseException):
            request.future.set_exception(outcome)
        else:
            request.future.set_result(outcome)


_COMMITTERS: weakref.WeakKeyDictionary[MaildirStore, GroupCommit] = weakref.WeakKeyDictionary()


def group_commit_for(maildir: MaildirStore) -> GroupCommit:
    """The group committer of ``maildir`` in the running event loop (made on first use)."""
    loop = asyncio.get_running_loop()
    committer = _COMMITTERS.get(maildir)
    if committer is None or committer.loop is not loop:
        committer = _COMMITTERS[maildir] = GroupCommit(maildir, loop)
    return committer
