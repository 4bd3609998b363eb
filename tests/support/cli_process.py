"""The ``hardmail`` command run as a real process, as an admin runs it: one-shot commands, and
``hardmail serve`` on ephemeral loopback ports, stopped with SIGTERM at the end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.store import open_store

EPHEMERAL_LISTENERS = tuple(item for kind in ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
                            for item in (f"--listen-{kind}", "127.0.0.1:0"))
STARTED_LINE = "Stop with Ctrl-C."


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without any HARDMAIL_* variable of the caller, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("HARDMAIL_")}
    env.update(extra)
    return env


def hardmail_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hardmail", *args]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            prefix: Sequence[str] = (), timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``hardmail ARGS`` to its end (``prefix``: e.g. a setpriv command line)."""
    return subprocess.run([*prefix, *hardmail_command(*args)], cwd=cwd, env=env or cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


class ServeProcess:
    def __init__(self, process: subprocess.Popen[str], started: list[str]) -> None:
        self.process = process
        self.started = started  # the lines printed up to "Stop with Ctrl-C."
        self.stderr = ""  # what it wrote on standard error, once stopped

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def serving(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Iterator[ServeProcess]:
    """``hardmail serve ARGS`` on ephemeral ports, yielded once it has announced its start."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: the server's log never blocks on it
        yield from _serve(args, cwd, env or cli_env(), errors)


def _serve(args: Sequence[str], cwd: Path, env: dict[str, str], errors: IO[str]) -> Iterator[ServeProcess]:
    process = subprocess.Popen(hardmail_command("serve", *EPHEMERAL_LISTENERS, *args), cwd=cwd,
                               env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    served: ServeProcess | None = None
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:  # blocks until the server prints, or ends
            lines.append(line)
            if line.startswith(STARTED_LINE):
                break
        else:
            process.wait(timeout=60)
            errors.seek(0)
            raise AssertionError(f"hardmail serve did not start: {''.join(lines)}{errors.read()}")
        served = ServeProcess(process, lines)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        errors.seek(0)
        if served is not None:
            served.stderr = errors.read()


class LoggedServe:
    """``hardmail serve --config PATH`` whose JSON log lines (stderr) are collected by a thread as
    they come, so a test waits for the events it expects instead of sleeping."""

    def __init__(self, config_path: Path, wait: float = 60.0, *, kill: bool = False) -> None:
        self.wait = wait
        self._kill = kill
        self.proc = subprocess.Popen(hardmail_command("serve", "--config", str(config_path)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._follower = threading.Thread(target=self._follow, daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def wait_for(self, event: str, **fields: Any) -> dict[str, Any]:
        """The next log line of ``event`` whose ``fields`` match, or AssertionError after ``wait``."""
        while True:
            try:
                found = self.events.get(timeout=self.wait)
            except queue.Empty:
                raise AssertionError(f"no {event} {fields} within {self.wait} s") from None
            if found.get("event") == event and all(found.get(k) == v for k, v in fields.items()):
                return found

    def wait_for_any(self) -> dict[str, Any]:
        """The next log line, whatever its event, or AssertionError after ``wait``."""
        try:
            return self.events.get(timeout=self.wait)
        except queue.Empty:
            raise AssertionError(f"no log line within {self.wait} s") from None

    def drain(self) -> list[dict[str, Any]]:
        """After :meth:`stop`: every line the server wrote that was not read yet."""
        self._follower.join(timeout=self.wait)
        lines = []
        while not self.events.empty():
            lines.append(self.events.get_nowait())
        return lines

    def stop(self) -> None:
        """SIGTERM (SIGKILL with ``kill``), then SIGKILL if it is still running after ``wait``."""
        if self.proc.poll() is None:
            (self.proc.kill if self._kill else self.proc.terminate)()
        try:
            self.proc.wait(timeout=self.wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=self.wait)


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_account(config: Config, address: str, password: str) -> None:
    """Migrate the database of ``config`` and add example.test with one account, before serving."""

    async def seed() -> None:
        store = await open_store(config.database_url)
        try:
            await store.migrate()
            admin = AdminService(store, config.auth.argon2)
            await admin.add_domain("example.test")
            await admin.add_account(address, password)
        finally:
            await store.close()

    asyncio.run(seed())
