"""Child processes of a benchmark run: started through :class:`ProcessGroup`, stopped by PID.

Every process a benchmark starts is registered here; :meth:`ProcessGroup.stop_all` (called from a
``finally`` block, an ``atexit`` hook and on SIGTERM) stops each one by its PID: SIGTERM, a bounded
wait, then SIGKILL. Daemons that fork workers (Postfix's master) register the extra PIDs they
know of, so those are stopped by PID too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

STOP_WAIT_SECONDS = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit (used in children that hold many connections)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_for_greeting(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bytes:
    """Connect until the server sends its 220 greeting; raises TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process {proc.pid} exited with status {proc.returncode} before greeting")
        try:
            with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as sock:
                greeting = sock.recv(4096)
                with contextlib.suppress(OSError):
                    sock.sendall(b"QUIT\r\n")
                if greeting.startswith(b"220"):
                    return greeting
                last_error = RuntimeError(f"unexpected greeting {greeting[:80]!r}")
        except OSError as exc:
            last_error = exc
        time.sleep(0.05)  # bounded by the deadline above
    raise TimeoutError(f"no SMTP greeting from {host}:{port} within {timeout:.0f}s ({last_error})")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` (Linux smaps_rollup): its private pages plus its share of
    the pages it shares with other processes (a forked worker shares most of its parent's)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss for pid {pid}")


def tree_memory_bytes(pid: int) -> int:
    """The memory of ``pid`` and all its descendants (a server with worker processes), as the sum of
    their proportional set sizes, so pages shared after a fork count once."""
    return sum(pss_bytes(member) for member in process_tree(pid))


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (from /proc)."""
    found = [pid]
    for child in children_of(pid):
        found += process_tree(child)
    return found


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            return False
    return True


def stop_pid(pid: int, wait: float = STOP_WAIT_SECONDS) -> None:
    """SIGTERM ``pid``, wait up to ``wait`` seconds, then SIGKILL it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)  # bounded by the deadline
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class ProcessGroup:
    """The processes one benchmark run started; all of them are stopped by PID at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: list[int] = []
        atexit.register(self.stop_all)
        with contextlib.suppress(ValueError):  # not the main thread: atexit and finally still apply
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def start(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
              stdin: bytes | None = None, many_files: bool = False) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                preexec_fn=raise_open_file_limit if many_files else None)
        log.close()
        self.procs.append(proc)
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        return proc

    def adopt(self, pid: int) -> None:
        """Stop ``pid`` too at the end (a daemon's worker the group did not start itself)."""
        self.extra_pids.append(pid)

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop_pid(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_WAIT_SECONDS)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        while self.procs:
            self.stop(self.procs[-1])
        while self.extra_pids:
            stop_pid(self.extra_pids.pop(), wait=2.0)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.stop_all()
        raise SystemExit(128 + signum)


def run_bounded(group: ProcessGroup, argv: Sequence[str], log_path: Path, timeout: float) -> tuple[int, str]:
    """Run a short-lived command as a member of ``group``; stopped by PID if it outlives ``timeout``."""
    proc = group.start(argv, log_path)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        code = -1
    finally:
        group.stop(proc)
    return code, log_path.read_text(errors="replace")
