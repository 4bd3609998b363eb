"""``hardmail status``: is a server running on this data directory, and how is it doing.

It reads what the running server keeps for it (:mod:`hardmail.ops.runstate`): the data
directory's lock (held by the server: pid, start time, worker count) and each server process's
status file (listeners, open sessions, queue size, last error-level events). It never opens the
database and never creates anything.

Exit status: 0 a server is running; 3 none is (as LSB init scripts' ``status``), including
when the data directory does not exist; 4 it cannot be told (the lock file is not readable by
this user); 1 the configuration cannot be loaded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hardmail.admin.cli_common import ConfigOption, DataDirOption, console, fail, load_cli_config, print_json
from hardmail.admin.datadir import WHERE_HINT, user_name
from hardmail.ops.runstate import lock_holder, lock_path, read_statuses

NOT_RUNNING = 3
UNKNOWN = 4
STALE_AFTER = 30.0  # seconds without an update after which a process's status is shown as stale

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the status as JSON.")]


def server_status(data_dir: Path, now: float) -> dict[str, Any]:
    """What ``hardmail status --json`` prints."""
    holder = lock_holder(data_dir) if data_dir.is_dir() else None
    if holder is None:
        return {"running": False, "data_dir": str(data_dir)}
    processes = read_statuses(data_dir, holder.get("pid"))
    listeners: list[dict[str, Any]] = next((p["listeners"] for p in processes if p.get("listeners")), [])
    queue_sizes = [p["queue_size"] for p in processes if p.get("queue_size") is not None]
    errors = sorted((e for p in processes for e in p.get("errors", [])), key=lambda e: str(e.get("ts", "")))
    return {
        "running": True, "data_dir": str(data_dir), "pid": holder.get("pid"),
        "started": holder.get("started"), "workers": holder.get("workers"),
        "processes": [{"pid": p.get("pid"), "worker": p.get("worker"), "sessions": p.get("sessions"),
                       "updated": p.get("updated"),
                       "stale": now - float(p.get("updated_at") or 0) > STALE_AFTER} for p in processes],
        "listeners": listeners or [{"kind": "configured", "address": a} for a in holder.get("listeners", [])],
        "sessions": sum(int(p.get("sessions") or 0) for p in processes),
        "queue_size": queue_sizes[0] if queue_sizes else None,
        "last_errors": errors[-10:],
    }


def status_command(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonFlag = False) -> None:
    """Say whether a server is running on the data directory: since when, listeners, workers, queue, last errors."""
    cfg = load_cli_config(config, data_dir, use="none")
    try:
        status = server_status(cfg.data_dir, time.time())
    except OSError as exc:
        fail(f"cannot read {lock_path(cfg.data_dir)}: {(exc.strerror or str(exc)).lower()} for user {user_name()}",
             "run `hardmail status` as the user the server runs as", code=UNKNOWN)
    if as_json:
        print_json(status)
    elif not cfg.data_dir.is_dir():
        fail(f"no hardmail data directory at {cfg.data_dir}; {WHERE_HINT}", code=NOT_RUNNING)
    elif not status["running"]:
        typer.echo(f"no server is running on {cfg.data_dir}")
    else:
        _print(status)
    if not status["running"]:
        raise typer.Exit(NOT_RUNNING)


def _print(status: dict[str, Any]) -> None:
    out = console.print
    out(f"hardmail is running on {escape(status['data_dir'])} (pid {status['pid']}, since {status['started']})",
        highlight=False)
    pids = ", ".join(str(p["pid"]) + (" (stale)" if p["stale"] else "") for p in status["processes"])
    out(f"  workers      {status['workers']}" + (f" (pids {pids})" if pids else ""), highlight=False)
    for listener in status["listeners"]:
        out(f"  {listener['kind']:<12} {escape(str(listener['address']))}", highlight=False)
    queue = status["queue_size"]
    out(f"  queue        {'unknown' if queue is None else f'{queue} message(s)'}", highlight=False)
    out(f"  sessions     {status['sessions']} open", highlight=False)
    if not status["last_errors"]:
        out("  last errors  none", highlight=False)
        return
    out("  last errors", highlight=False)
    for error in status["last_errors"]:
        details = " ".join(f"{k}={v}" for k, v in error.items() if k not in ("ts", "level", "event"))
        out(f"    {error.get('ts', '')} {escape(str(error.get('event', '')))} {escape(details)[:300]}",
            highlight=False)


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
