"""``hardmail status``: is a server running on this data directory, and how is it doing.

It reads what the running server keeps for it (:mod:`hardmail.ops.runstate`): the data
directory's lock (held by the server: pid, start time, worker count) and each server process's
status file (listeners, open sessions, queue size, last error-level events), and the backup
health state (:mod:`hardmail.ops.backup.health`: the last good backup and its age, the last
failure, the next scheduled time). It never opens the database and never creates anything.

Exit status: 0 a server is running; 3 none is (as LSB init scripts' ``status``), including
when the data directory does not exist; 4 it cannot be told (the lock file is not readable by
this user); 1 the configuration cannot be loaded.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hardmail.admin.cli_common import ConfigOption, DataDirOption, console, fail, load_cli_config, print_json
from hardmail.admin.datadir import WHERE_HINT, user_name
from hardmail.config.schema import Config
from hardmail.ops.backup.health import health_path, read_health
from hardmail.ops.backup.schedule import next_run, parse_schedule, resolve_timezone
from hardmail.ops.backup.scheduled import destination_of
from hardmail.ops.runstate import lock_holder, lock_path, read_statuses

NOT_RUNNING = 3
UNKNOWN = 4
STALE_AFTER = 30.0  # seconds without an update after which a process's status is shown as stale
OVERDUE_PERIODS = 1.5  # the last good backup is overdue when older than this many schedule periods

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


def backup_status(cfg: Config, now: datetime) -> dict[str, Any]:
    """The backup part of the status: the health state, its age, the next scheduled time."""
    health = read_health(cfg.data_dir)
    schedule = parse_schedule(cfg.backup.schedule)
    zone = resolve_timezone(cfg.backup.timezone)
    age = health.good_backup_age(now) if health else None
    enabled = cfg.backup.enabled
    status: dict[str, Any] = {
        "enabled": enabled, "schedule": cfg.backup.schedule, "timezone": str(zone),
        "destination": str(destination_of(cfg)),
        "next_run": next_run(schedule, now, zone).isoformat() if enabled else None,
        **(health.to_json() if health else {"last_good_backup_at": None, "last_result": None}),
        "age_seconds": None if age is None else round(age),
        "overdue": enabled and (age is None or age > schedule.period().total_seconds() * OVERDUE_PERIODS),
    }
    return status


def _add_backup_status(cfg: Config, status: dict[str, Any]) -> None:
    """The backup part, when the server runs or a backup was ever attempted."""
    try:
        if status["running"] or read_health(cfg.data_dir) is not None:
            status["backup"] = backup_status(cfg, datetime.now(UTC))
    except OSError as exc:
        status["backup"] = {"error": f"cannot read {health_path(cfg.data_dir)}: "
                                     f"{(exc.strerror or str(exc)).lower()} for user {user_name()}"}


def status_command(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonFlag = False) -> None:
    """Say whether a server is running on the data directory: since when, listeners, workers, queue, last
    errors, and how its backups are doing."""
    cfg = load_cli_config(config, data_dir, use="none")
    try:
        status = server_status(cfg.data_dir, time.time())
    except OSError as exc:
        fail(f"cannot read {lock_path(cfg.data_dir)}: {(exc.strerror or str(exc)).lower()} for user {user_name()}",
             "run `hardmail status` as the user the server runs as", code=UNKNOWN)
    _add_backup_status(cfg, status)
    if as_json:
        print_json(status)
    elif not cfg.data_dir.is_dir():
        fail(f"no hardmail data directory at {cfg.data_dir}; {WHERE_HINT}", code=NOT_RUNNING)
    elif not status["running"]:
        typer.echo(f"no server is running on {cfg.data_dir}")
        _print_backup(status.get("backup"))
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
    _print_backup(status.get("backup"))
    if not status["last_errors"]:
        out("  last errors  none", highlight=False)
        return
    out("  last errors", highlight=False)
    for error in status["last_errors"]:
        details = " ".join(f"{k}={v}" for k, v in error.items() if k not in ("ts", "level", "event"))
        out(f"    {error.get('ts', '')} {escape(str(error.get('event', '')))} {escape(details)[:300]}",
            highlight=False)


def _print_backup(backup: dict[str, Any] | None) -> None:
    """``backups      last good ... (5 h 3 min ago)``, the last failure, the next scheduled time."""
    if backup is None:
        return
    out = console.print
    if "error" in backup:
        out(f"  backups      [yellow]{escape(backup['error'])}[/]", highlight=False)
        return
    good, age = backup.get("last_good_backup_at"), backup.get("age_seconds")
    if good is None:
        line = "[yellow]no good (verified) backup yet[/]"
    else:
        line = f"last good {escape(good)} ({_ago(age or 0)})"
        line = f"[yellow]{line}, overdue[/]" if backup["overdue"] else line
        line += f" {escape(str(backup.get('last_archive') or ''))}" if backup.get("last_result") == "ok" else ""
    out(f"  backups      {line}", highlight=False)
    if backup.get("last_result") in ("failed", "unverified"):
        out(f"               [red]last attempt {escape(str(backup.get('last_attempt_at')))} "
            f"{backup['last_result']}: {escape(str(backup.get('last_error') or ''))[:300]}[/]", highlight=False)
    elif backup.get("last_failure_at"):
        out(f"               last failure {escape(str(backup['last_failure_at']))}: "
            f"{escape(str(backup.get('last_error') or ''))[:300]}", highlight=False)
    if not backup["enabled"]:
        out("               [yellow]scheduled backups are off (backup.enabled = false)[/]", highlight=False)
    else:
        out(f"               next {escape(str(backup['next_run']))} (schedule {escape(backup['schedule'])!r}, "
            f"{escape(backup['timezone'])})", highlight=False)


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min ago"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min ago"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h ago"


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
