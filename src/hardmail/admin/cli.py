"""The ``hardmail`` command: one typer app that gathers each area's sub-commands.

Exit codes: 0 success, 1 failure (the message says what was wrong and what to do), 2 usage error.
"""

from __future__ import annotations

import typer

from hardmail.admin import (
    cli_access,
    cli_accounts,
    cli_config,
    cli_credentials,
    cli_msgauth,
    cli_queue,
    cli_serve,
)

app = typer.Typer(
    name="hardmail",
    help="hardmail: a self-hosted mail server that is secure by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

cli_serve.register(app)
cli_config.register(app)
cli_accounts.register(app)
cli_credentials.register(app)
cli_queue.register(app)
cli_access.register(app)
cli_msgauth.register(app)


def main() -> None:
    app()
