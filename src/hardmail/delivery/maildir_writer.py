"""Maildir batches written by a child process, so that file system calls never contend with the
event loop for the interpreter lock.

A worker thread of group commit makes five or six system calls per message (open, writev, fsync,
close, rename, directory fsync); each gives the GIL up and takes it back, and while the event loop
is busy every take costs a pair of context switches. On a 2-core machine that tripled the CPU one
delivery costs (bench/README.md, "Where the time goes"). :class:`MaildirWriterProcess` runs the
same :func:`commit_requests` in ``python -m hardmail.delivery.maildir_writer`` instead: requests
and answers are length-prefixed pickles over the child's standard input and output, a channel
only this process can write to (which is why pickle is safe here: both ends are this program).
The child answers a batch only after :meth:`MaildirStore.deliver_batch` returned, i.e. after
every file and ``new/`` directory was fsync'd, so a caller still hears back only once its
message is on disk.

If the child dies, every request in flight fails with :class:`WriterStopped` (the client gets a
temporary error and sends again) and the next request starts a new child. The child exits when
its standard input closes, also when this process is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import signal
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from hardmail.delivery.durable import Part
from hardmail.delivery.maildir import MaildirStore

FRAME = struct.Struct("!Q")  # the length of the pickle that follows
STOP_WAIT_SECONDS = 10.0

# addresses, message parts, folder; a big message's body is a FileRange: its file's path, not its bytes
Request = tuple[Sequence[str], Sequence[Part], str | None]
Outcome = list[Path] | BaseException


class WriterStopped(OSError):
    """The writer process ended before it answered."""


def commit_requests(maildir: MaildirStore, requests: Sequence[Request]) -> list[Outcome]:
    """One ``deliver_batch`` per folder; when a batch fails, its messages one by one, so that a bad
    message (or mailbox) fails only its own caller."""
    outcomes: dict[int, Outcome] = {}
    for folder in dict.fromkeys(folder for _, _, folder in requests):
        members = [i for i, request in enumerate(requests) if request[2] == folder]
        try:
            paths = maildir.deliver_batch([(requests[i][0], requests[i][1]) for i in members], folder)
            outcomes.update(zip(members, paths, strict=True))
        except Exception:
            outcomes.update((i, _deliver_alone(maildir, requests[i])) for i in members)
    return [outcomes[i] for i in range(len(requests))]


def _deliver_alone(maildir: MaildirStore, request: Request) -> Outcome:
    try:
        return maildir.deliver(request[0], request[1], request[2])
    except Exception as exc:
        return exc


class MaildirWriterProcess:
    """The parent's side: sends batches to the child and hands each caller its outcomes."""

    def __init__(self, root: Path, hostname: str) -> None:
        self.root = root
        self.hostname = hostname
        self._proc: asyncio.subprocess.Process | None = None
        self._starting = asyncio.Lock()
        # request id -> (the child it was sent to, the caller's future)
        self._pending: dict[int, tuple[asyncio.subprocess.Process, asyncio.Future[list[Outcome]]]] = {}
        self._ids = itertools.count(1)
        self._readers: dict[asyncio.subprocess.Process, asyncio.Task[None]] = {}
        self._closed = False

    async def commit(self, requests: Sequence[Request]) -> list[Outcome]:
        proc = await self._running()
        request_id = next(self._ids)
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (proc, future)
        payload = pickle.dumps((request_id, [(list(a), list(p), f) for a, p, f in requests]), pickle.HIGHEST_PROTOCOL)
        assert proc.stdin is not None
        try:
            proc.stdin.write(FRAME.pack(len(payload)))
            proc.stdin.write(payload)  # apart: a large message is not copied once more
            await proc.stdin.drain()
        except (ConnectionError, OSError) as exc:
            self._pending.pop(request_id, None)
            if self._proc is proc:
                self._proc = None  # the next request starts a new child
            raise WriterStopped(f"the Maildir writer process is gone: {exc}") from None
        return await future

    async def close(self) -> None:
        """Let the child finish what it has, then end it (closing its input makes it exit); no new
        child starts afterwards."""
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        reader = self._readers.get(proc)
        assert proc.stdin is not None
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if reader is not None:
            await asyncio.gather(reader, return_exceptions=True)

    async def _running(self) -> asyncio.subprocess.Process:
        async with self._starting:
            if self._closed:
                raise WriterStopped("the Maildir writer is closed (the server is stopping)")
            if self._proc is None or self._proc.returncode is not None:
                # -P: the working directory must not come first on the child's import path
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-P", "-m", "hardmail.delivery.maildir_writer", str(self.root), self.hostname,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
                self._proc = proc
                self._readers[proc] = asyncio.get_running_loop().create_task(self._read_answers(proc))
            return self._proc

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                header = await proc.stdout.readexactly(FRAME.size)
                body = await proc.stdout.readexactly(FRAME.unpack(header)[0])
                request_id, outcomes = pickle.loads(body)  # noqa: S301 - written by our own child, see the module docstring
                _sent_to, future = self._pending.pop(request_id, (proc, None))
                if future is not None and not future.done():
                    future.set_result([_as_outcome(outcome) for outcome in outcomes])
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._fail_pending(proc)

    def _fail_pending(self, proc: asyncio.subprocess.Process) -> None:
        """``proc`` ended: fail what was sent to it (not what went to a newer child)."""
        self._readers.pop(proc, None)
        if self._proc is proc:
            self._proc = None
        lost = [request_id for request_id, (sent_to, _future) in self._pending.items() if sent_to is proc]
        for request_id in lost:
            _sent_to, future = self._pending.pop(request_id)
            if not future.done():
                future.set_exception(WriterStopped("the Maildir writer process stopped before it answered"))
        if lost and not self._closed:
            from hardmail.ops.log import log_event  # here: the child never needs logging's imports

            log_event("delivery.writer_stopped", level="error", pid=proc.pid, returncode=proc.returncode,
                      lost=len(lost), hint="the messages it was writing got 451 and will be sent again; "
                      "a new writer process starts with the next message")


def _as_outcome(answer: list[str] | BaseException) -> Outcome:
    return answer if isinstance(answer, BaseException) else [Path(path) for path in answer]


# ----- the child ------------------------------------------------------------------------------

def serve(maildir: MaildirStore, requests_in: BinaryIO, answers_out: BinaryIO) -> None:
    """Answer framed requests until the input ends."""
    while True:
        header = requests_in.read(FRAME.size)
        if len(header) < FRAME.size:
            return
        body = requests_in.read(FRAME.unpack(header)[0])
        request_id, requests = pickle.loads(body)  # noqa: S301 - written by our own parent, see the module docstring
        answer = _pickled_answer(request_id, commit_requests(maildir, requests))
        answers_out.write(FRAME.pack(len(answer)) + answer)
        answers_out.flush()


def _pickled_answer(request_id: int, outcomes: list[Outcome]) -> bytes:
    sendable: list[list[str] | BaseException] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            try:
                pickle.dumps(outcome)
                sendable.append(outcome)
            except Exception:  # an exception that cannot travel is told by its text
                sendable.append(RuntimeError(f"{type(outcome).__name__}: {outcome}"))
        else:
            sendable.append([str(path) for path in outcome])
    return pickle.dumps((request_id, sendable), pickle.HIGHEST_PROTOCOL)


def main(argv: list[str]) -> int:
    root, hostname = argv
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the batch in hand is
    # finished regardless, and the child ends when its parent closes its input.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    serve(MaildirStore(Path(root), hostname), sys.stdin.buffer, sys.stdout.buffer)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
