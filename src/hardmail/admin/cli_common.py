"""What every CLI command shares: the --config/--data-dir options, config loading, error exits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from hardmail.config.load import ConfigError, load_config
from hardmail.config.schema import Config
from hardmail.store import open_store
from hardmail.store.ports import Store

T = TypeVar("T")

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
    typer.Option("--data-dir", "-d", help="Data directory (overrides server.data_dir).", file_okay=False),
]


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


def fail(message: str, hint: str = "") -> NoReturn:
    """Print what was wrong (and what to do) on standard error and exit with status 1."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err_console.print(f"[yellow]hint:[/] {escape(hint)}", highlight=False)
    raise typer.Exit(1)


def warn(message: str) -> None:
    """A warning on standard error; the command goes on."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False)


def load_cli_config(
    config: Path | None, data_dir: Path | None, overrides: dict[str, Any] | None = None
) -> Config:
    """Load the configuration for a command, or exit 1 with every problem listed."""
    try:
        return load_config(config, data_dir=data_dir, overrides=overrides)
    except ConfigError as exc:
        fail(str(exc), "fix the setting named above; `hardmail config check` lists every setting")


async def with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store of ``config``, bring its schema up to date, run ``work`` on it, close it."""
    store = await open_store(config.database_url)
    try:
        await store.migrate()
        return await work(store)
    finally:
        await store.close()


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine to completion for a CLI command."""
    async def runner() -> T:
        return await factory()

    return asyncio.run(runner())
