"""The ``hardmail`` command: one typer app that gathers each area's sub-commands.

Exit codes: 0 success, 1 failure (the message says what was wrong and what to do), 2 usage error;
``config check`` and ``status`` document their own (2 invalid configuration; 3 no server running).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer

from hardmail.admin import (
    cli_access,
    cli_accounts,
    cli_audit,
    cli_backup,
    cli_config,
    cli_credentials,
    cli_mailbox,
    cli_msgauth,
    cli_queue,
    cli_serve,
    cli_status,
    cli_upgrade,
)
from hardmail.admin.cli_common import err_console
from hardmail.core.diskfull import causes, is_disk_full

app = typer.Typer(
    name="hardmail",
    help="hardmail: a self-hosted mail server that is secure by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

cli_serve.register(app)
cli_status.register(app)
cli_config.register(app)
cli_accounts.register(app)
cli_credentials.register(app)
cli_queue.register(app)
cli_access.register(app)
cli_msgauth.register(app)
cli_mailbox.register(app)
cli_backup.register(app)
cli_upgrade.register(app)
cli_audit.register(app)


def package_version() -> str:
    try:
        return version("hardmail")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    """``hardmail X.Y.Z``, the schema revision this build writes, and the database's when found."""
    if value:
        typer.echo(f"hardmail {package_version()}")
        for line in cli_upgrade.version_details():
            typer.echo(line)
        raise typer.Exit()


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help=(
        "Print the version, the schema revision it writes and the database's, and exit."))] = False,
) -> None:
    """hardmail: a self-hosted mail server that is secure by default."""


def main() -> None:
    try:
        app()
    except Exception as exc:
        # A command that met a full disk outside its store (writing a key, a certificate...).
        if not is_disk_full(exc):
            raise
        where = next((f" ({c.filename})" for c in causes(exc) if isinstance(c, OSError) and c.filename), "")
        err_console.print(f"[bold red]error:[/] the disk is full{where}; free space and retry", highlight=False)
        sys.exit(1)
