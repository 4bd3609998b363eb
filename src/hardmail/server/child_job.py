"""What the server's schedulers share (:mod:`.backup_scheduler`, :mod:`.audit_scheduler`, and the
background task of :mod:`.security_notices`): waiting for a wall-clock time in short naps, the
schedule loop, the task it runs in, and running one ``hardmail`` command as a child process.

- :func:`wait_until` sleeps in naps of at most ``MAX_NAP`` seconds and looks at the wall clock
  after each, so that a clock that is set or a machine that was suspended does not make a run
  late; time and naps come from the caller (an injected clock and ``sleep`` in tests).
- :class:`ChildScheduler`: the state and the loop both schedulers share: it waits for each due
  time and runs; an error of the scheduler's own is logged (``<name>.scheduler_error``) and the
  schedule goes on after ``RETRY_AFTER_ERROR``.
- :class:`LoopTask`: the one asyncio task a loop runs in (also the security-notice feed's);
  stopping it cancels the task and waits for its end.
- :func:`run_child` starts the command in its own session (its own process group), passes its
  standard error on to the server's line by line, collects its standard output, and on
  cancellation (server stop) sends SIGTERM to the group, then SIGKILL after a grace period; the
  child is always reaped.
- :func:`config_file_in_use`: the configuration file the server was started with, for the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hardmail.core.clock import Clock, SystemClock
from hardmail.ops.log import log_event

MAX_NAP = 300.0  # longest single sleep: the wall clock is looked at again at least this often
KILL_GRACE = 20.0  # seconds a child has after SIGTERM before SIGKILL
RETRY_AFTER_ERROR = 300.0  # seconds a scheduler waits after an error of its own
Sleep = Callable[[float], Awaitable[None]]


async def wait_until(due: datetime, now: Callable[[], datetime], sleep: Sleep) -> None:
    while (remaining := (due - now()).total_seconds()) > 0:
        await sleep(min(remaining, MAX_NAP))


class LoopTask:
    """The one asyncio task a scheduler's loop runs in."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None

    def start(self, loop: Coroutine[Any, Any, None], name: str) -> None:
        self.task = asyncio.create_task(loop, name=name)

    async def stop(self) -> None:
        """Cancel the task and wait for its end (a running child is terminated, then killed, and reaped)."""
        if self.task is None:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.task = None


class ChildScheduler:
    """What the audit and backup schedulers share: the injected clock and naps, the child's command,
    the loop task, one run at a time, ``child_started`` (set while a child runs; tests wait on it) and
    ``next_due``. A scheduler says when the run after a given moment is due (:meth:`following`) and
    how to run (:meth:`run_now`); ``name`` is its event prefix (``audit``, ``backup``)."""

    name = ""

    def __init__(self, command: Sequence[str], *, clock: Clock | None, sleep: Sleep, catch_up_delay: float,
                 kill_grace: float) -> None:
        self._clock = clock or SystemClock()
        self._sleep = sleep
        self._command = list(command)
        self._catch_up_delay = catch_up_delay
        self._kill_grace = kill_grace
        self._task = LoopTask()
        self._running = asyncio.Lock()
        self.child_started = asyncio.Event()
        self.next_due: datetime | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)

    def following(self, after: datetime) -> datetime:
        raise NotImplementedError

    async def run_now(self, reason: str = "manual") -> object:
        raise NotImplementedError

    def _start_loop(self, due: datetime, reason: str) -> None:
        self._task.start(self._follow(due, reason), f"{self.name}-scheduler")

    async def stop(self) -> None:
        """Stop the schedule; a running child is terminated (then killed) and reaped."""
        await self._task.stop()

    async def _follow(self, due: datetime, reason: str) -> None:
        """Run at each due time, forever; the first run is for ``reason``, the others ``scheduled``."""
        while True:
            self.next_due = due
            try:
                await wait_until(due, self.now, self._sleep)
                await self.run_now(reason)
                due, reason = self.following(max(self.now(), due)), "scheduled"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the scheduler itself must survive anything
                log_event(f"{self.name}.scheduler_error", level="error", error=type(exc).__name__,
                          detail=str(exc)[:300], retry_in=RETRY_AFTER_ERROR)
                await self._sleep(RETRY_AFTER_ERROR)
                due, reason = self.following(self.now()), "scheduled"

    def _watch(self, child: asyncio.subprocess.Process | None) -> None:
        (self.child_started.set if child is not None else self.child_started.clear)()


@dataclass(frozen=True)
class ChildResult:
    exit_status: int  # -1 when it could not start
    stdout: bytes
    error: str = ""  # why it could not start


Watch = Callable[[asyncio.subprocess.Process | None], None]


async def run_child(command: Sequence[str], *, kill_grace: float = KILL_GRACE, watch: Watch | None = None,
                    on_interrupted: Callable[[int], None] | None = None) -> ChildResult:
    """Run ``command`` to its end (see the module docstring); ``watch`` is called with the child
    when it has started and with None when it has ended; ``on_interrupted(pid)`` when a
    cancellation ended it."""
    try:
        child = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return ChildResult(-1, b"", str(exc.strerror or exc))
    if watch is not None:
        watch(child)
    try:
        stdout, _ = await asyncio.gather(_read_all(child.stdout), _relay_lines(child.stderr))
        status = await child.wait()
    except asyncio.CancelledError:
        await _terminate(child, kill_grace)
        if on_interrupted is not None:
            on_interrupted(child.pid)
        raise
    finally:
        if watch is not None:
            watch(None)
    return ChildResult(status, stdout)


async def _terminate(child: asyncio.subprocess.Process, kill_grace: float) -> None:
    """SIGTERM to the child's process group, SIGKILL after the grace period; always reaped."""
    _signal_group(child, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(child.wait()), kill_grace)
    except (TimeoutError, asyncio.CancelledError):
        _signal_group(child, signal.SIGKILL)
        with contextlib.suppress(asyncio.CancelledError):
            await child.wait()


async def _read_all(stream: asyncio.StreamReader | None) -> bytes:
    return await stream.read() if stream is not None else b""


async def _relay_lines(stream: asyncio.StreamReader | None) -> None:
    """Pass the child's standard error on to ours, line by line."""
    if stream is None:
        return
    while line := await stream.readline():
        text = line.decode("utf-8", "replace")
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()


def _signal_group(child: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def config_file_in_use() -> Path | None:
    """The configuration file the server was started with: ``--config`` of the running command,
    else $HARDMAIL_CONFIG, else ./hardmail.toml when it is there (as the loader chooses);
    absolute, since the child may be started from elsewhere."""
    from hardmail.config.load import config_file_path

    found = config_file_path(_command_line_config())
    return found.resolve() if found is not None else None


def _command_line_config() -> Path | None:
    try:
        import click
    except ImportError:
        return None
    context = click.get_current_context(silent=True)
    value = context.params.get("config") if context is not None else None
    return Path(value) if isinstance(value, str | Path) and str(value) else None


def hardmail_command(config_file: Path | None, *args: str) -> list[str]:
    """``python -m hardmail ARGS [--config F]`` (the file the server was started with by default)."""
    found = config_file or config_file_in_use()
    command = [sys.executable, "-m", "hardmail", *args]
    return [*command, "--config", str(found)] if found is not None else command
