"""``hardmail upgrade``: bring the database schema to this hardmail's, after a full, verified backup
(``--no-backup`` skips it, with a warning); ``--dry-run`` rehearses the upgrade where the live
database does not change and reports what would change. Refused while a server runs on the data
directory (it would upgrade at its next start anyway). Also the database line of ``hardmail
--version`` (:func:`version_details`). The work is :mod:`hardmail.ops.backup.upgrade`.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from hardmail.admin.cli_backup_create import run_interruptible
from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    fail,
    fail_if_disk_full,
    load_cli_config,
    print_json,
    warn,
)
from hardmail.config.load import ConfigError, load_config
from hardmail.config.schema import Config
from hardmail.ops.backup.upgrade import (
    RehearsalReport,
    UpgradeOptions,
    UpgradeOutcome,
    config_file_in_use,
    rehearse_upgrade,
    sqlite_file,
    steps_json,
    unavailable,
    upgrade_with_backup,
)
from hardmail.ops.log import configure_logging
from hardmail.ops.runstate import AnotherServerRunning, ServerLock
from hardmail.store.ports import StoreError
from hardmail.store.sql import migrate as migrations
from hardmail.store.sql.engine import create_engine_for, describe_url

_VERSION_READ_SECONDS = 5.0  # `hardmail --version` waits this long for a PostgreSQL server
_SERVER_RUNNING_HINT = ("stop it first (`hardmail status` shows it; a server upgrades the schema itself, "
                        "after a backup, when it starts)")


def register(app: typer.Typer) -> None:
    app.command("upgrade")(upgrade_command)


def upgrade_command(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Apply the pending migrations to a copy (SQLite) or in a transaction rolled back (PostgreSQL), "
        "and report what would change and how long it took; the live database is not changed."))] = False,
    no_backup: Annotated[bool, typer.Option("--no-backup", help=(
        "Upgrade without the full backup taken first (at your own risk)."))] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Upgrade the database schema to this hardmail's, after a full backup (exit 0 when nothing to do)."""
    cfg = load_cli_config(config, data_dir, use="none")
    where = _database_place(cfg)
    if not _database_exists(cfg):
        _print_nothing(as_json, where, None, f"there is no database yet ({where}): nothing to upgrade; "
                       "`hardmail serve` creates it")
        return
    if dry_run:
        _print_rehearsal(_run(cfg, lambda: rehearse_upgrade(cfg)), as_json)
        return
    configure_logging(cfg.logging)  # schema.upgrade_backup and schema.upgraded go where the server logs
    lock = _lock(cfg)
    try:
        options = UpgradeOptions(backup=not no_backup, config_file=config_file_in_use(config), warn=warn)
        _print_outcome(_run(cfg, lambda: upgrade_with_backup(cfg, options)), where, as_json)
    finally:
        if lock is not None:
            lock.release()


def _run(cfg: Config, work: Any) -> Any:
    try:
        return run_interruptible(work, "the upgrade was interrupted (SIGTERM or SIGINT); a backup it was making "
                                 "is removed", "run `hardmail upgrade` again (`hardmail upgrade --dry-run` shows "
                                 "what is still to do)")
    except migrations.SchemaError as exc:
        fail(str(exc), exc.hint)
    except StoreError as exc:
        fail_if_disk_full(exc, cfg.data_dir)
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail_if_disk_full(exc, cfg.data_dir)
        fail(f"cannot upgrade: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))


def _lock(cfg: Config) -> ServerLock | None:
    """Hold the data directory so that no server starts during the upgrade; refuse a running one."""
    if not cfg.data_dir.is_dir():
        return None  # PostgreSQL without a data directory yet: no server has run here
    try:
        return ServerLock.acquire(cfg.data_dir, {"command": "upgrade"})
    except AnotherServerRunning as exc:
        fail(f"cannot upgrade while a server runs: {exc}", _SERVER_RUNNING_HINT)
    except OSError as exc:
        fail(f"cannot use the data directory {cfg.data_dir}: {exc.strerror or exc}",
             "run as the user that owns it")


def _database_place(cfg: Config) -> str:
    path = sqlite_file(cfg.database_url)
    return str(path) if path is not None else describe_url(cfg.database_url)


def _database_exists(cfg: Config) -> bool:
    """False for an SQLite file that is missing or empty (nothing to upgrade, nothing to create here)."""
    path = sqlite_file(cfg.database_url)
    try:
        return path is None or path.stat().st_size > 0
    except OSError:
        return False


# --- output ----------------------------------------------------------------------------------


def _print_nothing(as_json: bool, where: str, revision: str | None, text: str) -> None:
    if as_json:
        print_json({"database": where, "from": revision, "to": revision, "upgraded": False, "migrations": []})
    else:
        typer.echo(text)


def _steps_lines(result: migrations.UpgradeResult) -> list[str]:
    width = max((len(step.revision) for step in result.steps), default=0)
    return [f"  {step.revision:<{width}}  {step.description}  ({step.seconds:.2f} s)" for step in result.steps]


def _print_outcome(outcome: UpgradeOutcome, where: str, as_json: bool) -> None:
    result = outcome.result
    if as_json:
        print_json({"database": where, "from": result.before, "to": result.after, "upgraded": outcome.upgraded,
                    "migrations": steps_json(result),
                    "seconds": round(result.seconds, 3), "backup": str(outcome.backup) if outcome.backup else None,
                    "backup_skipped": outcome.backup_skipped or None, "collapsed": list(result.collapsed)})
        return
    if not result.steps:
        note = " (its revision rows of the old branched history were rewritten as one)" if result.collapsed else ""
        typer.echo(f"the database schema is at {result.after}, the newest this hardmail "
                   f"({migrations.hardmail_version()}) knows: nothing to upgrade{note}")
        return
    typer.echo(f"database   {where}")
    if outcome.backup is not None:
        typer.echo(f"backup     {outcome.backup} (full, verified)")
    elif outcome.backup_skipped:
        typer.echo(f"backup     none ({outcome.backup_skipped})")
    if result.before is None:
        typer.echo(f"created    the schema at {result.after} (the database was empty) in {result.seconds:.2f} s")
    else:
        typer.echo(f"upgraded   {result.before} → {result.after} in {result.seconds:.2f} s")
    for line in _steps_lines(result):
        typer.echo(line)


def _print_rehearsal(report: RehearsalReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    result = report.result
    if not result.steps:
        typer.echo(f"the database schema is at {result.after}, the newest this hardmail "
                   f"({migrations.hardmail_version()}) knows: nothing to upgrade")
        return
    typer.echo(f"dry run on {report.database}, {report.method}: the live database was not changed")
    typer.echo(f"would upgrade {result.before} → {result.after}: {len(result.steps)} migrations, "
               f"{result.seconds:.2f} s")
    for line in _steps_lines(result):
        typer.echo(line)
    typer.echo("tables" if report.tables else "tables: no change")
    for change in report.tables:
        typer.echo(f"  {_table_heading(change.table, change.change, change.rows_before, change.rows_after)}")
        for detail in change.details:
            typer.echo(f"      {detail}")


def _rows(count: int | None) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def _table_heading(table: str, change: str, before: int | None, after: int | None) -> str:
    if change == "added":
        return f"+ {table} (new, {_rows(after)})"
    if change == "removed":
        return f"- {table} (removed, {_rows(before)})"
    return f"~ {table} ({_rows(before)} → {_rows(after)})"


# --- hardmail --version ----------------------------------------------------------------------


def version_details() -> list[str]:
    """The lines after ``hardmail X.Y.Z``: the schema revision this build writes, and the revision
    of the database of the default configuration when there is one (its data directory as the
    server would find it: $HARDMAIL_CONFIG, ./hardmail.toml, $HARDMAIL_DATA_DIR, ./hardmail-data)."""
    lines = [f"schema revision {migrations.head_revision()} (the newest this version writes)"]
    try:
        cfg = load_config(None)
    except ConfigError:
        return lines
    if _database_exists(cfg):
        lines.append(f"database {_database_place(cfg)}: {_describe_database(cfg)}")
    return lines


def _describe_database(cfg: Config) -> str:
    try:
        state = asyncio.run(asyncio.wait_for(_read_state(cfg), _VERSION_READ_SECONDS))
    except TimeoutError:
        return "its schema revision cannot be read (no answer)"
    except Exception as exc:
        reason = str(unavailable(cfg.database_url, exc)).rpartition(": ")[2]
        return f"its schema revision cannot be read ({reason})"
    if state.is_new:
        return "no schema yet"
    if state.problem is not None:
        written = f", written by hardmail {state.written_by}" if state.written_by else ""
        return f"schema revision {', '.join(state.stamped)}{written}: unknown to this version"
    if state.pending:
        return f"schema revision {state.current}; `hardmail upgrade` brings it to {state.head}"
    return f"schema revision {state.current} (current)"


async def _read_state(cfg: Config) -> migrations.SchemaState:
    engine = create_engine_for(cfg.database_url, read_only=True)
    try:
        return await migrations.read_state(engine)
    finally:
        await engine.dispose()
