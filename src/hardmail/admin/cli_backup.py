"""``hardmail backup ...``: the sub-command group of backups. Each part registers its commands:
:mod:`cli_backup_create` (create, list, keygen), :mod:`cli_backup_restore` (verify, restore),
:mod:`cli_backup_run` (run: the scheduled backup, now). docs/backup.md describes them.
"""

from __future__ import annotations

import typer

backup_app = typer.Typer(help="Backups: create, verify, list and restore archives of the server.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    for module in _parts():
        module.register(backup_app)
    app.add_typer(backup_app, name="backup")


def _parts() -> list:  # type: ignore[type-arg]
    import importlib

    names = ("cli_backup_create", "cli_backup_restore", "cli_backup_run")
    parts = []
    for name in names:
        try:
            parts.append(importlib.import_module(f"hardmail.admin.{name}"))
        except ModuleNotFoundError as exc:  # a part not merged yet
            if exc.name != f"hardmail.admin.{name}":
                raise
    return parts
