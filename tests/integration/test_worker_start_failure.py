"""``hardmail serve`` with two workers whose start-up fails (issue 11, 17): the supervisor stops
every worker and exits non-zero with one line naming the cause, instead of restarting workers
that can never start.

The failure is injected in the workers only (the supervisor's own start-up, which already checks
the data directory, the database and the certificate, passes): the server is started through a
small launcher that replaces ``build_context`` (what each worker runs first) before the real
command line runs. Each server is a real process with real forked workers; without the readiness
signal it restarts the workers forever and ``run_cli``'s timeout fails the test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.cli_process import EPHEMERAL_LISTENERS, cli_env

BOUNDED = 90.0  # seconds; the server exits long before (the restart loop never would)

LAUNCHER = """
import runpy, sys
import hardmail.app as app

real = app.build_context
kind = sys.argv.pop(1)  # then: hardmail's own arguments
sys.argv[0] = "hardmail"

async def failing(config, first=True, **options):
    if not first:  # only in a forked worker
        if kind == "permission":
            raise PermissionError(13, "Permission denied", str(config.data_dir / "hardmail.db"))
        raise RuntimeError("the message hook cannot be built\\nsecond line")
    return await real(config, first, **options)

app.build_context = failing
runpy.run_module("hardmail", run_name="__main__")
"""

def _serve_failing(tmp_path: Path, kind: str) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "data"
    command = [sys.executable, "-c", LAUNCHER, kind, "serve", "-d", str(data),
               *EPHEMERAL_LISTENERS]
    env = cli_env(HARDMAIL_SERVER__WORKERS="2", HARDMAIL_LOGGING__FORMAT="json")
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BOUNDED,
                          check=False)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "hardmail is running" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("{", "created data directory "))]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_worker_that_cannot_open_the_database_stops_the_server(tmp_path: Path) -> None:
    result = _serve_failing(tmp_path, "permission")
    database = tmp_path / "data" / "hardmail.db"
    assert _error_line(result).startswith(f"error: cannot start: cannot write {database}: permission denied for user ")
    assert '"server.worker_start_failed"' in result.stderr
    assert '"server.worker_died"' not in result.stderr  # never restarted


def test_an_unexpected_worker_error_is_one_line_too(tmp_path: Path) -> None:
    line = _error_line(_serve_failing(tmp_path, "unexpected"))
    assert re.fullmatch(r"error: cannot start: worker [01] stopped while starting: "
                        r"RuntimeError: the message hook cannot be built", line), line
