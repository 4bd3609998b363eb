"""``hardmail backup run``: take the scheduled backup now, exactly as the schedule would (full or
incremental per ``backup.full_every_days``, encrypted to ``backup.recipients``, verified when
``backup.verify``, then retention), and print how it went. The server's scheduler runs this same
command in a child process (with ``--from-server``). docs/backup.md, "Scheduled backups".

Exit status: 0 a good archive (or an archive made with ``backup.verify = false``); 1 the backup
failed or the archive did not verify; 75 another backup of the data directory was running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    byte_progress,
    console,
    err_console,
    fail,
    load_cli_config,
    print_json,
)
from hardmail.config.load import config_file_path
from hardmail.config.schema import Config
from hardmail.ops.backup.scheduled import ProgressCallback, ScheduledOutcome, run_scheduled_backup, utc_now
from hardmail.ops.log import configure_logging

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
FromServerFlag = Annotated[bool, typer.Option(
    "--from-server", hidden=True,
    help="Run for the server's scheduler: log events as the server does, at a lower priority.")]
_NICENESS = 10


def run_command(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonFlag = False,
                from_server: FromServerFlag = False) -> None:
    """Take the scheduled backup now, as the schedule would: full or incremental, verified, then retention."""
    cfg = load_cli_config(config, data_dir, use="read")
    if from_server or cfg.logging.file is not None:
        configure_logging(cfg.logging)  # events go where the server's go
    if from_server:
        with contextlib.suppress(OSError):
            os.nice(_NICENESS)
    show_progress = not as_json and not from_server and err_console.is_terminal
    outcome = _run(cfg, _config_file(config), show_progress)
    if as_json:
        print_json(outcome.to_json())
    else:
        _print(outcome)
    raise typer.Exit(outcome.exit_code(cfg.backup.verify))


def _run(cfg: Config, config_file: Path | None, show_progress: bool) -> ScheduledOutcome:
    with byte_progress("backup", shown=show_progress) as progress:
        callback: ProgressCallback | None = progress if show_progress else None
        try:
            return asyncio.run(_interruptible(cfg, config_file, callback))
        except asyncio.CancelledError:
            fail("the backup was interrupted (SIGTERM) and left no archive",
                 "run `hardmail backup run` again; `hardmail status` shows the last good backup")


async def _interruptible(cfg: Config, config_file: Path | None,
                         progress: ProgressCallback | None) -> ScheduledOutcome:
    """SIGTERM (the server stopping) cancels the backup, so that its clean-up runs and the
    attempt is recorded as interrupted."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_scheduled_backup(cfg, utc_now(), config_file=config_file, progress=progress)


def _config_file(option: Path | None) -> Path | None:
    """The configuration file in use (stored in the archive), chosen as the loader chooses it."""
    found = config_file_path(option)
    return found.resolve() if found is not None else None


def _print(outcome: ScheduledOutcome) -> None:
    out = console.print
    kind = f"{outcome.kind} " if outcome.kind else ""
    if outcome.result == "skipped":
        out(f"[yellow]skipped:[/] {escape(outcome.error)}; try again when it has finished", highlight=False)
        return
    if outcome.result == "failed":
        err_console.print(f"[bold red]error:[/] the {kind}backup failed: {escape(outcome.error)}", highlight=False)
        err_console.print("hint: fix the cause named above and run `hardmail backup run` again; "
                          "`hardmail status` shows the last good backup", highlight=False)
        return
    if outcome.result == "unverified" and outcome.error:
        err_console.print(f"[bold red]error:[/] {escape(outcome.error)}", highlight=False)
        err_console.print(f"hint: the archive {escape(str(outcome.archive))} does not count as a backup; "
                          "check the disk, then run `hardmail backup run` again", highlight=False)
        return
    state = "verified" if outcome.result == "ok" else "not verified (backup.verify = false)"
    out(f"{kind}backup {escape(str(outcome.archive))}: {state}, {outcome.seconds:.1f} s", highlight=False)
    if outcome.pruned:
        out(f"retention deleted {len(outcome.pruned)} archive(s): {escape(', '.join(outcome.pruned))}",
            highlight=False)


def register(backup_app: typer.Typer) -> None:
    backup_app.command("run")(run_command)
