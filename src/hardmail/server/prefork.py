"""Worker processes: the listening sockets bound once, then shared by several forked workers.

Each worker is a whole server (its own event loop, store connections and group commit) that
accepts from the same listening sockets, so the kernel spreads new connections over the workers
and a busy worker takes fewer. The supervisor (the process that bound the sockets) only forks,
forwards signals and restarts a worker that died:

- SIGTERM and SIGINT: every worker is told to stop (SIGTERM); the supervisor returns when all have.
- SIGHUP: forwarded, so every worker reloads its TLS certificates.
- SIGUSR1 (``QUEUE_WAKE_SIGNAL``) from a worker that queued mail for remote recipients: forwarded
  to worker 0, which runs the outbound queue, so that mail leaves at once rather than at the
  queue's next poll.
- Readiness: each worker has a pipe to the supervisor and writes one byte on it once it serves
  (:func:`worker_ready`). A worker of the first start that exits before it was ready (the store
  cannot be opened, the log file cannot be opened, ...) writes its error on the pipe instead; the
  supervisor then stops every worker and raises :class:`WorkerStartError` carrying that error, so
  ``hardmail serve`` exits with one line rather than restarting workers that can never start.
- A worker that exits after it was ready, while the server is not stopping, is started again,
  after a pause that grows while workers keep dying young (a crash must not become a fork loop).
- Workers die with the supervisor (Linux ``PR_SET_PDEATHSIG``): a killed supervisor never leaves
  workers holding the ports.

The supervisor must not have threads when it forks; app.py does its start-up work (migrations,
spool recovery) with every thread joined before :func:`supervise` is called.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from hardmail.config.schema import Config, parse_host_port
from hardmail.ops.log import log_event
from hardmail.server.listen_errors import ListenError

MAX_AUTO_WORKERS = 4  # "0 = automatic" never starts more workers than this
LISTEN_BACKLOG = 1024
YOUNG_SECONDS = 10.0  # a worker that dies younger than this counts towards the restart pause
MAX_RESTART_PAUSE = 30.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
QUEUE_WAKE_SIGNAL = signal.SIGUSR1
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, QUEUE_WAKE_SIGNAL)
_READY = b"R"  # on a worker's pipe: it serves
_FAILED = b"E"  # on a worker's pipe, followed by a pickled (one-line reason, exception or None)
_MAX_REPORT = 16 * 1024  # under a pipe's capacity: the worker's write never waits for the supervisor
_ready_fd: int | None = None  # in a worker: the write end of its pipe, until it reported


class WorkerStartError(RuntimeError):
    """A worker of the first start stopped before it was ready. ``str()`` is one line naming the
    worker and its reason; ``__cause__`` is the worker's own exception when it could be carried."""

    def __init__(self, worker: int, reason: str) -> None:
        super().__init__(f"worker {worker} stopped while starting: {reason}")
        self.worker = worker
        self.reason = reason


@dataclass(frozen=True)
class ListeningSocket:
    kind: str  # a listener kind (hardmail.server.listener.KINDS)
    address: str  # as configured: "127.0.0.1:2525"
    sock: socket.socket


def worker_count(config: Config) -> int:
    """``server.workers``, where 0 means one per CPU core, at most MAX_AUTO_WORKERS."""
    if config.server.workers > 0:
        return config.server.workers
    return max(1, min(MAX_AUTO_WORKERS, len(os.sched_getaffinity(0))))


def bind_listeners(config: Config, kinds: tuple[str, ...]) -> list[ListeningSocket]:
    """Listening sockets for every configured address (a host name or an empty host gives one per
    address it stands for, as asyncio's create_server does); closes what it opened when one fails,
    raising :class:`ListenError` that names the address and the cause."""
    bound: list[ListeningSocket] = []
    try:
        for kind in kinds:
            for address in getattr(config.listen, kind):
                host, port = parse_host_port(address)
                try:
                    for family, sockaddr in _passive_addresses(host, port):
                        bound.append(ListeningSocket(kind, address, _listen(family, sockaddr)))
                except OSError as exc:
                    raise ListenError(host, port, exc) from exc
    except BaseException:
        for listening in bound:
            listening.sock.close()
        raise
    return bound


def _passive_addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """Where to listen for ``host`` (empty: every interface, IPv4 and IPv6), without duplicates."""
    found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return list(dict.fromkeys((family, sockaddr) for family, _type, _proto, _name, sockaddr in found))


def _listen(family: socket.AddressFamily, sockaddr: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Supervisor:
    """Forks ``count`` workers running ``run_worker(index)`` and keeps them running until stopped."""

    def __init__(self, count: int, run_worker: Callable[[int], int]) -> None:
        self.count = count
        self.run_worker = run_worker
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, started at)
        self.stopping = False
        self._pause = 0.0
        self._pipes: dict[int, int] = {}  # pid -> read end of the worker's readiness pipe
        self._first: set[int] = set()  # pids of the first start: dying unready stops the server
        self._failure: WorkerStartError | None = None

    def run(self) -> None:
        _join_other_threads()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _FORWARDED}
        try:
            for index in range(self.count):
                if not self.stopping:
                    self._first.add(self._spawn(index))
            log_event("server.workers", workers=self.count, pids=sorted(self.children))
            self._reap_until_done()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._signal_all(signal.SIGKILL)  # only reached with workers left when the supervisor itself failed
            for fd in self._pipes.values():
                os.close(fd)
            self._pipes.clear()
        if self._failure is not None:
            raise self._failure

    def _reap_until_done(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            report = self._take_report(pid)
            if not report.startswith(_READY) and pid in self._first and not self.stopping:
                self._fail_start(entry[0], status, report)
            elif not self.stopping:
                self._restart(entry, status)

    def _take_report(self, pid: int) -> bytes:
        """What the worker ``pid`` (which has exited) wrote on its pipe."""
        fd = self._pipes.pop(pid, None)
        if fd is None:
            return b""
        chunks: list[bytes] = []
        try:
            while chunk := os.read(fd, 65536):  # non-blocking: a grandchild may still hold the write end
                chunks.append(chunk)
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        finally:
            os.close(fd)
        return b"".join(chunks)

    def _fail_start(self, index: int, status: int, report: bytes) -> None:
        """A worker of the first start died before it was ready: stop them all, then raise."""
        reason, cause = _decode_failure(report)
        self._failure = WorkerStartError(index, reason or f"it ended before it was ready ({_describe(status)})")
        if isinstance(cause, BaseException):
            self._failure.__cause__ = cause
        log_event("server.worker_start_failed", level="error", worker=index, status=_describe(status),
                  detail=self._failure.reason[:300],
                  hint="the server stops: a worker that cannot start is not restarted")
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _restart(self, entry: tuple[int, float], status: int) -> None:
        index, started = entry
        young = time.monotonic() - started < YOUNG_SECONDS
        self._pause = min(MAX_RESTART_PAUSE, max(1.0, self._pause * 2)) if young else 0.0
        log_event("server.worker_died", level="error", worker=index, status=_describe(status),
                  restart_in=self._pause,
                  hint="a worker stopped unexpectedly and is started again; its log lines above say why")
        deadline = time.monotonic() + self._pause
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(0.1)  # the supervisor has nothing else to do; a stop ends the pause early
        if not self.stopping:
            self._spawn(index)

    def _spawn(self, index: int) -> int:
        """Fork worker ``index``. Signals wait while it happens: the supervisor's handler sees the
        new child in ``children``, and the child sets its own handling before any reaches it."""
        parent = os.getpid()
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:
                for fd in (read_end, *self._pipes.values()):
                    os.close(fd)
                os._exit(_worker_main(parent, index, self.run_worker, write_end))
            self.children[pid] = (index, time.monotonic())
            self._pipes[pid] = read_end
        finally:
            os.close(write_end)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)
        return pid

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == QUEUE_WAKE_SIGNAL:
            self._signal_worker(0, QUEUE_WAKE_SIGNAL)
            return
        if signum == signal.SIGHUP:
            self._signal_all(signal.SIGHUP)
            return
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_worker(self, index: int, signum: int) -> None:
        for pid, (worker, _started) in list(self.children.items()):
            if worker == index:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _join_other_threads() -> None:
    """Wait for threads left from start-up (e.g. a database connection's): a fork copies no thread,
    but it would copy a lock one of them holds."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(timeout=5.0)
    if threading.active_count() > 1:
        log_event("server.workers", level="warning", threads=threading.active_count(),
                  detail="threads still running at fork; workers may inherit a held lock")


def _worker_main(parent: int, index: int, run_worker: Callable[[int], int], ready_fd: int) -> int:
    """In the forked worker: die with the supervisor, take default signal handling, run; an error
    before :func:`worker_ready` goes to the supervisor on ``ready_fd``."""
    global _ready_fd
    _ready_fd = ready_fd
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    for sig in (signal.SIGHUP, QUEUE_WAKE_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)  # until the event loop listens for them
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)  # blocked by _spawn around the fork
    _die_with_parent()
    if os.getppid() != parent:  # the supervisor died before the line above took effect
        return 1
    try:
        return run_worker(index)
    except BaseException as exc:
        log_event("server.worker_failed", level="error", worker=index, error=type(exc).__name__,
                  detail=str(exc)[:300])
        _report_failure(exc)
        return 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()


def worker_ready() -> None:
    """In a worker: tell the supervisor that this worker serves (from now on, its death means a
    restart, not a failed start). Elsewhere, and when called again, nothing happens."""
    global _ready_fd
    fd, _ready_fd = _ready_fd, None
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, _READY)
    with contextlib.suppress(OSError):
        os.close(fd)
    log_event("server.worker_ready", pid=os.getpid())


def _report_failure(exc: BaseException) -> None:
    """In a worker that failed before it was ready: its error, for the supervisor to show. The
    exception itself goes along when it pickles (the supervisor maps its type to a hint)."""
    global _ready_fd
    fd, _ready_fd = _ready_fd, None
    if fd is None:
        return
    first_line = (str(exc).splitlines() or [""])[0][:300]
    reason = first_line if isinstance(exc, OSError) and first_line else f"{type(exc).__name__}: {first_line}"
    payload = _encode_failure(reason, exc)
    with contextlib.suppress(OSError):
        os.write(fd, _FAILED + payload)
    with contextlib.suppress(OSError):
        os.close(fd)


def _encode_failure(reason: str, exc: BaseException) -> bytes:
    # pickle: the pipe joins this process to its own fork, nobody else can write to it
    try:
        payload = pickle.dumps((reason, exc))
        pickle.loads(payload)  # noqa: S301  # our own bytes; some exceptions pickle but cannot be rebuilt
    except Exception:
        payload = b""
    if not payload or len(payload) > _MAX_REPORT:
        payload = pickle.dumps((reason, None))
    return payload


def _decode_failure(report: bytes) -> tuple[str, object]:
    if not report.startswith(_FAILED):
        return "", None
    try:
        reason, cause = pickle.loads(report[len(_FAILED):])  # noqa: S301  # from our own fork only
    except Exception:
        return "", None
    return str(reason), cause


def wake_queue_runner() -> None:
    """In a worker: ask the supervisor to wake worker 0's outbound queue (mail was just queued)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(os.getppid(), QUEUE_WAKE_SIGNAL)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the supervisor dies; elsewhere nothing happens."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
