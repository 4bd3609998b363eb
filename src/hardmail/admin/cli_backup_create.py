"""``hardmail backup create|list|keygen``: make an archive of the running server (full or
incremental, optionally encrypted to age recipients), list the archives of a directory with their
chain and verify status, and make an age key pair for ``--encrypt-to``.

The work is :func:`hardmail.ops.backup.create.create_backup`; this module only turns options into
a :class:`BackupRequest`, shows a progress bar on a terminal and prints the outcome. Exit codes:
0 success, 1 failure (the message says what was wrong and what to do), also when the new archive
failed its verification (it is kept, and listed as failed). docs/backup.md describes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    byte_progress,
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
from hardmail.ops.backup.archive import ArchiveError, new_identity, parse_recipients
from hardmail.ops.backup.catalog import ArchiveRecord, BackupError, ListedArchive, default_destination, list_directory
from hardmail.ops.backup.create import BackupRequest, BackupResult, create_backup
from hardmail.ops.backup.sources import relative_inside

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
_PHASES = {"snapshot": "database snapshot", "files": "files", "verify": "verifying", "encrypt": "encrypting"}
_SHOWN_FAILURES = 20
_RECIPIENT_HINT = ("give age public keys (age1...) or files of them; `hardmail backup keygen --out FILE` makes "
                   "a key pair")
T = TypeVar("T")


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
    recipients = tuple(encrypt_to or cfg.backup.recipients)
    _check_recipients(recipients)  # a usage error: refused before the attempt (no health record)
    destination = _destination(cfg, to)
    if destination.exists() and not destination.is_dir():
        fail(f"the backup destination {destination} is not a directory", "pass --to with a directory")
    request = BackupRequest(destination=destination, incremental=incremental, recipients=recipients,
                            verify=not no_verify, config_file=config_file_path(config))
    result = _run_create(cfg, request)
    if json_output:
        print_json(_result_json(result))
    else:
        typer.echo(_summary(result))
    _after_create(cfg, result)


def _check_recipients(recipients: tuple[str, ...]) -> None:
    try:
        parse_recipients(list(recipients))
    except ArchiveError as exc:
        fail(str(exc), _RECIPIENT_HINT)


def run_interruptible(factory: Callable[[], Awaitable[T]], message: str, hint: str) -> T:
    """Run one coroutine for a CLI command; SIGTERM or SIGINT cancels it, so that its clean-up
    runs (no partial or plaintext file is left), then exits 1 with ``message`` and ``hint``."""
    async def runner() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, task.cancel)
        return await factory()

    try:
        return asyncio.run(runner())
    except (asyncio.CancelledError, KeyboardInterrupt):
        fail(message, hint)


def _destination(config: Config, given: Path | None) -> Path:
    """``--to``, else ``[backup] destination``, else ``<data_dir>/backups``."""
    chosen = given or config.backup.destination
    if chosen is None:
        return default_destination(config.data_dir)
    return Path(chosen).expanduser().absolute()


class _Interrupted(BaseException):
    """Raised from the progress callback (in whichever thread reports progress) after SIGTERM or
    SIGINT: the backup unwinds from where it is, its clean-up removing what it wrote."""


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT while the block runs (the old handlers come back after)."""
    flag = threading.Event()
    previous = {number: signal.signal(number, lambda _n, _f: flag.set()) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run_create(config: Config, request: BackupRequest) -> BackupResult:
    with byte_progress("starting", names=_PHASES) as bar, _interrupt_flag() as interrupted:

        def show(phase: str, done: int, total: int) -> None:
            if interrupted.is_set():
                raise _Interrupted
            bar(phase, done, total)

        try:
            return run_async(lambda: create_backup(config, request, show))
        except _Interrupted:
            bar.stop()
            fail("the backup was interrupted (SIGTERM or SIGINT) and left no archive",
                 "run `hardmail backup create` again")
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
    listed: list[ListedArchive] = []
    if directory is not None or where.exists():  # the default place not made yet: no backups
        try:
            listed = list_directory(where)
        except BackupError as exc:
            fail(str(exc), exc.hint)
    if json_output:
        print_json([entry.to_json() for entry in listed])
        return
    if not listed:
        typer.echo(f"no backups in {where}")
        return
    table = Table(title=f"Backups in {where} (newest first)", title_justify="left")
    for header in ("archive", "kind", "parent", "created", "size", "encrypted", "status"):
        table.add_column(header, no_wrap=True)
    for entry in reversed(listed):
        table.add_row(*(Text(cell) for cell in _list_row(entry)))
    # never folded into an unreadable column when written to a file or a pipe
    (console if console.is_terminal else Console(width=max(console.width, 240))).print(table)


def _list_row(entry: ListedArchive) -> list[str]:
    """One archive; its status says ok, failed, unverified, missing, no record, damaged or chain broken."""
    record = entry.record
    size = human_size(entry.size if entry.size is not None else record.archive_size if record else 0)
    encrypted = "yes" if (record.encrypted if record else str(entry.archive_file).endswith(".age")) else "no"
    if record is None:
        return [entry.name, entry.kind, "?", "?", size, encrypted, entry.status]
    parent = f"{record.parent} ({len(record.chain) - 1} before)" if record.parent else "-"
    return [record.name, record.kind, parent, record.created_at.replace("T", " ")[:19], size, encrypted,
            entry.status]


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
