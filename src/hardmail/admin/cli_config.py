"""``hardmail config``: check the configuration (print every effective setting) and show an example.

``config check`` exits 0 when the configuration is usable and raises no warning, 1 when it is
usable but prints a warning about an insecure setting (0 with ``--warnings-ok``), and 2 when it is
not usable, listing every problem with the file, variable or option that caused it; so that
scripts can gate on it. It neither needs nor creates the data directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    config_error_hint,
    err_console,
    fail,
)
from hardmail.config.load import ConfigError, load_config
from hardmail.config.render import render_example, render_json, render_toml
from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings

CHECK_HEADER = (
    "Effective hardmail configuration: every setting, defaults included "
    "(a database password is shown as ***)."
)

EXIT_WARNINGS = 1
EXIT_INVALID = 2

WarningsOkFlag = Annotated[
    bool, typer.Option("--warnings-ok", help="Exit 0 even when insecure settings are warned about.")
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the effective configuration as JSON instead of TOML.")
]

config_app = typer.Typer(
    name="config", help="Check the configuration or print an example file.", no_args_is_help=True
)


@config_app.command("check")
def check(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonFlag = False,
          warnings_ok: WarningsOkFlag = False) -> None:
    """Validate the configuration, print every effective setting, then any insecure warnings.
    Exit status: 0 usable, 1 usable with warnings (0 with --warnings-ok), 2 not usable."""
    try:
        cfg = load_config(config, data_dir=data_dir)
    except ConfigError as exc:
        fail(str(exc), config_error_hint(exc), EXIT_INVALID)
    typer.echo(render_json(cfg) if as_json else render_toml(cfg, header=CHECK_HEADER), nl=False)
    warnings = insecure_warnings(cfg)
    for warning in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    problems = missing_files(cfg)
    if problems:
        fail("\n".join(problems), "create the files or correct the paths, then run the check again", EXIT_INVALID)
    if warnings and not warnings_ok:
        err_console.print(f"{len(warnings)} warning(s); exit status {EXIT_WARNINGS} "
                          "(pass --warnings-ok to accept them)", highlight=False)
        raise typer.Exit(EXIT_WARNINGS)


@config_app.command("example")
def example() -> None:
    """Print a fully commented configuration file with every default (save it as hardmail.toml)."""
    typer.echo(render_example(), nl=False)


def missing_files(cfg: Config) -> list[str]:
    """Certificate and key files that the configuration names but that do not exist."""
    named: list[tuple[str, Path | None]] = [
        ("tls.cert_file", cfg.tls.cert_file),
        ("tls.key_file", cfg.tls.key_file),
    ]
    for index, entry in enumerate(cfg.tls.certificates):
        named += [
            (f"tls.certificates[{index}].cert_file", entry.cert_file),
            (f"tls.certificates[{index}].key_file", entry.key_file),
        ]
    return [
        f"{key}: file {path} does not exist or is not a regular file"
        for key, path in named
        if path is not None and not path.is_file()
    ]


def register(app: typer.Typer) -> None:
    app.add_typer(config_app)
