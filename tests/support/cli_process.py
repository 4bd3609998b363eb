"""The ``hardmail`` command run as a real process, as an admin runs it: one-shot commands, and
``hardmail serve`` on ephemeral loopback ports, stopped with SIGTERM at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

EPHEMERAL_LISTENERS = ("--listen-smtp", "127.0.0.1:0", "--listen-submission", "127.0.0.1:0",
                       "--listen-submissions", "127.0.0.1:0")
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
