"""What every CLI command shares: the --config/--data-dir options, config loading, the data
directory (created by commands that write, required by the ``@read_only`` ones), the store, and
error exits, including the one-line "disk is full" message for a full disk met anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from hardmail.admin.datadir import DataDirError, ensure_data_dir, require_initialised, user_name
from hardmail.config.load import ConfigError, load_config
from hardmail.config.schema import Config
from hardmail.core.diskfull import POSTGRES_DISK_FULL, causes, is_disk_full
from hardmail.store import open_store
from hardmail.store.ports import Store

T = TypeVar("T")
P = ParamSpec("P")
# "read": a read-only command of the database; "read-files": one that reads files of the data
# directory only (DKIM keys); "write": creates the data directory when missing; "none": neither.
DataDirUse = Literal["read", "read-files", "write", "none"]

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML configuration file (default: $HARDMAIL_CONFIG, else ./hardmail.toml if present).",
        dir_okay=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", file_okay=False, readable=False,  # access is checked by datadir.py, per use
                 help="Data directory (default: server.data_dir, else $HARDMAIL_DATA_DIR, else ./hardmail-data)."),
]
# How the running command uses the data directory; set by @read_only, "write" otherwise.
_data_dir_use: contextvars.ContextVar[DataDirUse] = contextvars.ContextVar("hardmail_data_dir_use", default="write")
# Whether the running command only reads the database (@read_only): it never migrates the schema.
_reads_only: contextvars.ContextVar[bool] = contextvars.ContextVar("hardmail_reads_only", default=False)
SCHEMA_UPGRADE_HINT = "the database needs an upgrade: run `hardmail upgrade` as its owner (takes a backup first)"


class ByteProgress:
    """A progress callback (phase, done bytes, total bytes; a total of 0 is unknown) drawing one
    bar on standard error; ``names`` gives phases the words shown for them."""

    def __init__(self, bar: Progress, task: TaskID, names: Mapping[str, str]) -> None:
        self._bar, self._task, self._names = bar, task, names

    def __call__(self, phase: str, done: int, total: int) -> None:
        self._bar.update(self._task, description=self._names.get(phase, phase), completed=done, total=total or None)

    def stop(self) -> None:
        """Take the bar off the terminal (before an error is printed)."""
        self._bar.stop()


@contextlib.contextmanager
def byte_progress(first: str, shown: bool | None = None, names: Mapping[str, str] | None = None,
                  ) -> Iterator[ByteProgress]:
    """The progress bar of long byte-counting work (backup, verify, restore), on a terminal only
    (``shown`` None: when standard error is one); gone when the block ends."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    visible = err_console.is_terminal if shown is None else shown
    with Progress(*columns, console=err_console, disable=not visible, transient=True) as bar:
        yield ByteProgress(bar, bar.add_task(first, total=None), names or {})


def print_json(value: Any) -> None:
    """Machine-readable output for ``--json``."""
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A rich table; cells are plain text (never markup), "no <title>" when empty."""
    if not rows:
        typer.echo(f"no {title.lower()}")
        return
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    """Print what was wrong (and what to do) on standard error and exit with status ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
    raise typer.Exit(code)


def _marked(use: DataDirUse, command: Callable[P, T], reads_only: bool = False) -> Callable[P, T]:
    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        token = _data_dir_use.set(use)
        reads = _reads_only.set(reads_only)
        try:
            return command(*args, **kwargs)
        finally:
            _reads_only.reset(reads)
            _data_dir_use.reset(token)

    return run


def read_only(command: Callable[P, T]) -> Callable[P, T]:
    """Mark a command that only reads the database: it refuses a missing or uninitialised data
    directory instead of creating one (and an empty database) where the admin did not mean it,
    and never writes the database, not even to migrate it (a user who can only read it can run
    it; an out-of-date schema is refused with the command that upgrades it)."""
    return _marked("read", command, reads_only=True)


def changes_stored(command: Callable[P, T]) -> Callable[P, T]:
    """Mark a command that changes what is already stored (remove, disable, passwd...): like
    :func:`read_only`, it refuses a missing data directory rather than create an empty one in
    which it could only fail ("no such account") after leaving a new database behind."""
    return _marked("read", command)


def read_only_files(command: Callable[P, T]) -> Callable[P, T]:
    """Mark a command that only reads files of the data directory: it refuses a missing one."""
    return _marked("read-files", command)


def warn(message: str) -> None:
    """A warning on standard error; the command goes on."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def load_cli_config(
    config: Path | None, data_dir: Path | None, overrides: dict[str, Any] | None = None,
    use: DataDirUse | None = None,
) -> Config:
    """Load the configuration for a command, or exit 1 with every problem listed; then make sure
    the data directory serves the command (``use``, by default "read" under @read_only, else
    "write"): created when missing for writes, required for reads, left alone for "none"."""
    try:
        loaded = load_config(config, data_dir=data_dir, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc), config_error_hint(exc))
    prepare_cli_data_dir(loaded, use or _data_dir_use.get())
    return loaded


def config_error_hint(exc: ConfigError) -> str:
    """What to do about ``exc``: the message of a missing file already says it; a TOML syntax
    error is fixed at its line; anything else is a setting named in the message."""
    text = str(exc)
    if "configuration file does not exist" in text:
        return ""
    if "TOML syntax error" in text:
        return "fix the file at the line and column named above (TOML: key = \"value\" under [section] headers)"
    return "fix the setting named above; `hardmail config check` lists every setting"


def prepare_cli_data_dir(config: Config, use: DataDirUse) -> None:
    try:
        if use in ("read", "read-files"):
            require_initialised(config, database=use == "read")
        elif use == "write" and ensure_data_dir(config):
            typer.echo(f"created data directory {config.data_dir}", err=True)
    except DataDirError as exc:
        fail(str(exc))
    except OSError as exc:
        fail_if_disk_full(exc, config.data_dir)
        if isinstance(exc, PermissionError):
            fail(f"cannot use the data directory {config.data_dir}: permission denied for user {user_name()}",
                 "run as the user that owns it, or let that user search its parent directories")
        fail(f"cannot create the data directory {config.data_dir}: {exc.strerror or exc}")


# --- a full disk, wherever it is met ---------------------------------------------------------

def disk_full_message(data_dir: Path) -> str:
    return f"the disk holding {data_dir} is full; free space and retry"


def fail_if_disk_full(exc: BaseException, data_dir: Path) -> None:
    """Exit with the one-line disk-full message when ``exc`` is a full disk; else return."""
    if not is_disk_full(exc, data_dir):
        return
    if any(getattr(cause, "sqlstate", None) == POSTGRES_DISK_FULL for cause in causes(exc)):
        fail("the disk of the PostgreSQL server (storage.url) is full; free space there and retry")
    fail(disk_full_message(data_dir))


async def with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store of ``config``, create the schema of a new database (or require a current
    one: commands never upgrade a schema, `hardmail upgrade` does, after a backup), run ``work``
    on it, close it. A full disk ends the command with one line saying so."""
    try:
        store = await open_store(config.database_url, read_only=_reads_only.get())
        try:
            await _require_current_schema(store)
            return await work(store)
        finally:
            await store.close()
    except Exception as exc:
        fail_if_disk_full(exc, config.data_dir)
        raise


async def _require_current_schema(store: Store) -> None:
    """A new database gets its schema (unless the command only reads); an out-of-date one, or
    one of a newer hardmail, ends the command with what to do."""
    from hardmail.store.sql.migrate import SchemaError

    try:
        if not _reads_only.get():
            await store.migrate()
        elif not await store.schema_is_current():
            fail(SCHEMA_UPGRADE_HINT)
    except SchemaError as exc:
        fail(str(exc), exc.hint)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine to completion for a CLI command."""
    async def runner() -> T:
        return await factory()

    return asyncio.run(runner())
