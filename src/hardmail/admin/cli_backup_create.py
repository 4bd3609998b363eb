"""``hardmail backup create|list|keygen``: make an archive of the running server (full or
incremental, optionally encrypted to age recipients), list the archives of a directory with their
chain and verify status, and make an age key pair for ``--encrypt-to``.

The work is :func:`hardmail.ops.backup.create.create_backup`; this module only turns options into
a :class:`BackupRequest`, shows a progress bar on a terminal and prints the outcome. Exit codes:
0 success, 1 failure (the message says what was wrong and what to do), also when the new archive
failed its verification (it is kept, and listed as failed). docs/backup.md describes them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    console,
    err_console,
    fail,
    load_cli_config,
    print_json,
    read_only,
    run_async,
    warn,
)
from hardmail.admin.mailbox_service import human_size
from hardmail.config.load import config_file_path
from hardmail.config.schema import Config
from hardmail.delivery.durable import fsync_dir
from hardmail.ops.backup.archive import new_identity
from hardmail.ops.backup.catalog import ArchiveRecord, BackupError, default_destination, read_records
from hardmail.ops.backup.create import BackupRequest, BackupResult, create_backup
from hardmail.ops.backup.sources import relative_inside

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_PHASES = {"snapshot": "database snapshot", "files": "files", "verify": "verifying", "encrypt": "encrypting"}
_SHOWN_FAILURES = 20


def register(app: typer.Typer) -> None:
    app.command("create")(create)
    app.command("list")(list_archives)
    app.command("keygen")(keygen)


# --- create ----------------------------------------------------------------------------------

@read_only
def create(
    to: Annotated[Path | None, typer.Option(
        "--to", file_okay=False, help="Directory of the archives (default: [backup] destination, "
                                      "else <data_dir>/backups; created 0700).")] = None,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Store only the files the newest archive of the directory does not have "
                              "(a full backup when there is none).")] = False,
    encrypt_to: Annotated[list[str] | None, typer.Option(
        "--encrypt-to", help="age recipient (age1..., or a file of them; repeatable; default: [backup] "
                             "recipients). `hardmail backup keygen` makes one.")] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not verify the new archive.")] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Back up the server (database, mail, queue, keys, configuration) while it runs."""
    cfg = load_cli_config(config, data_dir)
    request = BackupRequest(
        destination=_destination(cfg, to), incremental=incremental,
        recipients=tuple(encrypt_to or cfg.backup.recipients), verify=not no_verify,
        config_file=config_file_path(config),
    )
    result = _run_create(cfg, request)
    if json_output:
        print_json(_result_json(result))
    else:
        typer.echo(_summary(result))
    _after_create(cfg, result)


def _destination(config: Config, given: Path | None) -> Path:
    """``--to``, else ``[backup] destination``, else ``<data_dir>/backups``."""
    chosen = given or config.backup.destination
    if chosen is None:
        return default_destination(config.data_dir)
    return Path(chosen).expanduser().absolute()


def _run_create(config: Config, request: BackupRequest) -> BackupResult:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def show(phase: str, done: int, total: int) -> None:
            bar.update(task, description=_PHASES.get(phase, phase), completed=done, total=total or None)

        try:
            return run_async(lambda: create_backup(config, request, show))
        except BackupError as exc:
            bar.stop()
            fail(str(exc), exc.hint)


def _summary(result: BackupResult) -> str:
    record = result.record
    stored = len(result.manifest.stored_here())
    return (f"{record.archive_file}: {record.kind}, {record.file_count} files ({stored} stored), "
            f"{human_size(record.archive_size)}, {result.seconds:.1f} s, {_verified_text(record)}")


def _verified_text(record: ArchiveRecord) -> str:
    return {"ok": "verified", "failed": "verification FAILED", "unverified": "not verified"}[record.verify_status]


def _result_json(result: BackupResult) -> dict[str, Any]:
    return {"archive": str(result.archive_path), "seconds": round(result.seconds, 3),
            "stored_files": len(result.manifest.stored_here()), "notes": result.manifest.notes,
            **result.record.to_json()}


def _after_create(config: Config, result: BackupResult) -> None:
    """The warnings an admin must see, and exit 1 for an archive that failed verification."""
    record = result.record
    if not record.encrypted and relative_inside(result.archive_path, config.data_dir) is None:
        warn(f"{result.archive_path.name} is not encrypted and is outside the data directory: anyone who gets "
             "the file can read all mail, password hashes and keys; pass --encrypt-to RECIPIENT "
             "(`hardmail backup keygen --out FILE` makes one)")
    if result.verify_skipped:
        warn(f"{record.archive_file} was not verified: {result.verify_skipped}")
    if result.manifest.notes.get("incremental_without_parent"):
        warn("no earlier archive to build on in that directory: this is a full backup")
    if record.verify is not None and not record.verify.ok:
        for failure in record.verify.failures[:_SHOWN_FAILURES]:
            err_console.print(f"  {failure}", highlight=False, markup=False)
        more = len(record.verify.failures) - _SHOWN_FAILURES
        if more > 0:
            err_console.print(f"  ... and {more} more", highlight=False)
        fail(f"the new archive {record.archive_file} failed its verification (it is kept, listed as failed)",
             "check the disk of the backup directory, then run the backup again; "
             f"`hardmail backup verify {result.archive_path}` shows the failures again")


# --- list ------------------------------------------------------------------------------------

def list_archives(
    directory: Annotated[Path | None, typer.Option(
        "--dir", file_okay=False, help="Directory of the archives (default: as for `backup create`).")] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the archives of a backup directory: kind, chain, time, size, encryption, verify status."""
    cfg = load_cli_config(config, data_dir, use="none" if directory is not None else "read-files")
    where = directory.expanduser().absolute() if directory is not None else _destination(cfg, None)
    try:
        records = read_records(where)
    except BackupError as exc:
        fail(str(exc), exc.hint)
    if json_output:
        print_json([{**record.to_json(), "present": (where / record.archive_file).is_file()} for record in records])
        return
    if not records:
        typer.echo(f"no backups in {where}")
        return
    table = Table(title=f"Backups in {where}", title_justify="left")
    for header in ("archive", "kind", "parent", "created", "size", "encrypted", "verify"):
        table.add_column(header, no_wrap=True)
    for record in reversed(records):
        table.add_row(*(Text(cell) for cell in _list_row(where, record)))
    # never folded into an unreadable column when written to a file or a pipe
    (console if console.is_terminal else Console(width=max(console.width, 240))).print(table)


def _list_row(directory: Path, record: ArchiveRecord) -> list[str]:
    """One archive: ``verify`` is ok, failed, unverified, or missing (no archive file next to its record)."""
    status = record.verify_status if (directory / record.archive_file).is_file() else "missing"
    parent = f"{record.parent} ({len(record.chain) - 1} before)" if record.parent else "-"
    return [record.name, record.kind, parent, record.created_at.replace("T", " ")[:19],
            human_size(record.archive_size), "yes" if record.encrypted else "no", status]


# --- keygen ----------------------------------------------------------------------------------

def keygen(
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="File for the new identity (private key).")],
) -> None:
    """Make an age key pair: the identity goes to FILE (0600), the recipient is printed."""
    identity, recipient = new_identity()
    text = (f"# hardmail backup identity, created {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}\n"
            f"# public key: {recipient}\n{identity}\n")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        fail(f"{out} exists; an identity is never overwritten (archives encrypted to it could not be read any more)",
             "choose another file name")
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror or exc}", "choose a file in a directory you can write")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(out.absolute().parent)
    typer.echo(recipient)
    err_console.print(f"identity written to {out}: keep a copy off this machine (without it no encrypted archive "
                      f"can be restored); pass the recipient above to --encrypt-to", highlight=False, markup=False)
