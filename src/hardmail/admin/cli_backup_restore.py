"""``hardmail backup verify`` and ``hardmail backup restore``: checking an archive (and its chain)
and restoring it: whole, into a new data directory (``--into DIR``), or in part into the running
server (``--only settings|domain NAME|mailbox ADDRESS``, :mod:`hardmail.ops.backup.selective`).
docs/backup.md describes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from hardmail.admin.cli_common import (
    ByteProgress,
    ConfigOption,
    DataDirOption,
    byte_progress,
    fail,
    fail_if_disk_full,
    load_cli_config,
    print_json,
    run_async,
)
from hardmail.config.load import config_file_path
from hardmail.delivery.durable import write_durably
from hardmail.ops.backup.archive import ArchiveError, load_identities
from hardmail.ops.backup.manifest import ARCHIVE_SUFFIX, ENCRYPTED_SUFFIX, ManifestError
from hardmail.ops.backup.restore import RestoreError, RestoreReport, restore_full
from hardmail.ops.backup.verify import VerifyReport, verify_archive
from hardmail.ops.log import log_event

ProgressCallback = Callable[[str, int, int], None]
ONLY_KINDS = ("settings", "domain", "mailbox")
VERIFY_HINT = "`hardmail backup verify ARCHIVE` lists every problem of an archive and its chain"
IDENTITY_HINT = "pass --identity FILE: the age identity file that `hardmail backup keygen` wrote"
INSIDE_HINT = ("copy the archive (with its .json) out of that directory first, or restore into a new directory "
               "and swap the two while the server is stopped")
# a verify failure about the identity, not the archive: never recorded as damage
_IDENTITY_FAILURES = ("none of the given identities can decrypt it", "no age identity was given")

ArchiveArgument = Annotated[Path, typer.Argument(
    help="The archive: hardmail-...-full.tar.zst or ...-incr.tar.zst (.age when encrypted).", show_default=False)]
IdentityOption = Annotated[list[Path] | None, typer.Option(
    "--identity", "-i", help="age identity file to decrypt an encrypted archive (repeatable).", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def register(app: typer.Typer) -> None:
    """Adds ``verify`` and ``restore`` to ``hardmail backup``."""
    app.command("verify")(verify_command)
    app.command("restore")(restore_command)


# --- verify ----------------------------------------------------------------------------------

def verify_command(archive: ArchiveArgument, identity: IdentityOption = None, json_output: JsonOption = False) -> None:
    """Check ARCHIVE and its chain: every file's SHA-256, the database copy, the index against the files.

    Exit status 0 only when everything holds; else 1, with the failures listed."""
    identities = _checked_archive(archive, identity)
    try:
        with progress_bar() as progress:
            report = verify_archive(archive, identities, progress)
    except OSError as exc:
        fail_if_disk_full(exc, archive.parent)
        fail(f"cannot read {exc.filename or archive}: {exc.strerror or exc}",
             "run as a user that may read the archive and write a temporary directory ($TMPDIR)")
    except (ArchiveError, ManifestError) as exc:
        fail(str(exc), VERIFY_HINT)
    identity_problem = _identity_failure(report)
    if identity_problem is not None:  # says nothing about the archive: the sidecar is left as it is
        fail(identity_problem, IDENTITY_HINT)
    sidecar = _record_verify(archive, report)
    log_event("backup.verified", level="info" if report.ok else "error", archive=_archive_name(archive),
              ok=report.ok, failures=len(report.failures), files=report.files_checked,
              messages=report.messages_checked)
    if json_output:
        print_json({"archive": str(archive), "ok": report.ok, "files_checked": report.files_checked,
                    "messages_checked": report.messages_checked, "failures": list(report.failures),
                    "sidecar_updated": sidecar is not None})
    else:
        _print_verify(archive, report)
    if not report.ok:
        raise typer.Exit(1)


def _identity_failure(report: VerifyReport) -> str | None:
    """The failure line saying that the identities cannot decrypt the archive, if there is one."""
    for line in report.failures:
        if any(marker in line for marker in _IDENTITY_FAILURES):
            return line
    return None


def _print_verify(archive: Path, report: VerifyReport) -> None:
    if report.ok:
        typer.echo(f"ok: {archive.name} verified: {report.files_checked} files, {report.messages_checked} "
                   "messages in the index, each with its file")
        return
    typer.echo(f"FAILED: {archive.name} does not verify ({len(report.failures)} problems):")
    for line in report.failures:
        typer.echo(f"  {line}")


def _checked_archive(archive: Path, identity: list[Path] | None) -> list[Path]:
    if not archive.is_file():
        fail(f"there is no archive at {archive}", "give the path of a hardmail-....tar.zst or .tar.zst.age file "
             "(`hardmail backup list` shows them)")
    identities = list(identity or [])
    if archive.name.endswith(".age") and not identities:
        fail(f"{archive.name} is encrypted", IDENTITY_HINT)
    for path in identities:
        if not path.is_file():
            fail(f"the identity file {path} does not exist", IDENTITY_HINT)
    if identities:
        try:
            load_identities(identities)
        except ArchiveError as exc:
            fail(str(exc), IDENTITY_HINT)
    return identities


def _archive_name(archive: Path) -> str:
    name = archive.name
    for suffix in (ENCRYPTED_SUFFIX, ARCHIVE_SUFFIX):
        name = name.removesuffix(suffix)
    return name


def _record_verify(archive: Path, report: VerifyReport) -> Path | None:
    """Set the sidecar's ``verify`` field (no file names: the failures counted by kind), when
    the sidecar is there and writable; its path, else None."""
    sidecar = archive.parent / f"{_archive_name(archive)}.json"
    if not sidecar.is_file() or not os.access(sidecar.parent, os.W_OK):
        return None
    try:
        record = json.loads(sidecar.read_bytes())
        if not isinstance(record, dict):
            return None
        record["verify"] = {"ok": report.ok, "at": datetime.now(UTC).isoformat(), "failures": list(report.summary)}
        mode = sidecar.stat().st_mode & 0o666
        write_durably(sidecar, json.dumps(record, indent=1, sort_keys=True).encode(), mode=mode)
    except (OSError, ValueError):
        return None
    return sidecar


# --- restore ---------------------------------------------------------------------------------

def restore_command(
    archive: ArchiveArgument,
    only_value: Annotated[str | None, typer.Argument(
        help="With --only domain or --only mailbox: the domain or the address.", show_default=False)] = None,
    into: Annotated[Path | None, typer.Option(
        "--into", help="Restore everything into this new (or empty) data directory.", file_okay=False,
        show_default=False)] = None,
    identity: IdentityOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="With --into: move a non-empty DIR aside (to DIR.before-restore-TIME) first; only when "
        "no server runs on it.")] = False,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="With --into, for an archive of a server on PostgreSQL: restore into this empty "
        "database (postgresql+asyncpg://...) instead of a new SQLite database.", show_default=False)] = None,
    only: Annotated[str | None, typer.Option(
        "--only", metavar="settings|domain NAME|mailbox ADDRESS",
        help="Restore only this part, merged into the running server of --config/--data-dir.",
        show_default=False)] = None,
    as_folder: Annotated[str | None, typer.Option(
        "--as-folder", help="With --only domain|mailbox: put the restored messages in this folder (e.g. Restored).",
        show_default=False)] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Restore ARCHIVE (and its chain): all into a new data directory, or a part into this server.

    --into DIR restores everything into an empty or new directory; --only settings, --only domain NAME
    or --only mailbox ADDRESS merges that part into the server of --config/--data-dir."""
    identities = _checked_archive(archive, identity)
    if into is not None and only is not None:
        fail("--into and --only cannot be used together",
             "--into DIR restores everything into a new data directory; --only restores a part into this server")
    if only is not None:
        kind, value = _only(only, only_value)
        _restore_selective(archive, kind, value, identities, as_folder, json_output, config, data_dir,
                           force or database_url is not None)
        return
    if into is None:
        fail("say where to restore", "--into DIR for the whole data directory, or --only settings|domain NAME|"
             "mailbox ADDRESS to merge a part into the running server")
    if only_value is not None or as_folder is not None:
        fail("a domain, an address and --as-folder go with --only", "drop them, or restore a part with --only")
    _restore_full(archive, into, identities, force, database_url, json_output)


def _only(only: str, value: str | None) -> tuple[str, str | None]:
    kind, sep, inline = only.partition("=") if "=" in only else only.partition(":")
    kind = kind.strip().lower()
    if kind not in ONLY_KINDS:
        fail(f"--only {only!r} is not a part that can be restored", "use --only settings, --only domain NAME or "
             "--only mailbox ADDRESS")
    if sep and value is not None:
        fail(f"--only {only} names its {kind} already; {value!r} is one too many", "give the name once")
    value = inline.strip() if sep else value
    if kind == "settings" and value:
        fail("--only settings takes no name", "use --only settings alone")
    if kind != "settings" and not value:
        fail(f"--only {kind} needs the {'domain' if kind == 'domain' else 'address'}",
             f"e.g. --only {kind} {'example.org' if kind == 'domain' else 'alice@example.org'}")
    return kind, value or None


def _restore_full(archive: Path, into: Path, identities: list[Path], force: bool, database_url: str | None,
                  json_output: bool) -> None:
    try:
        with progress_bar() as progress:
            report = run_async(lambda: restore_full(archive, into, identities, force, database_url, progress))
    except (RestoreError, ArchiveError, ManifestError) as exc:
        fail(str(exc), _restore_hint(str(exc)))
    except OSError as exc:  # what was written is removed again
        fail_if_disk_full(exc, into)
        fail(f"cannot restore into {into}: {exc.strerror or exc} ({exc.filename or into})",
             "run as a user that may write there, or choose another --into directory")
    if json_output:
        print_json(_jsonable(report) | {"start": start_command(report)})
        return
    _print_restored(report)


def _restore_hint(text: str) -> str:
    if " is inside " in text:
        return INSIDE_HINT
    if "identity" in text or "decrypt" in text:
        return IDENTITY_HINT
    return "" if "--force" in text or "stop it" in text else VERIFY_HINT


def start_command(report: RestoreReport) -> str:
    """How to start the restored server: ``--config`` only when the restore wrote a config file."""
    wrote_config = report.config_file is not None and report.config_file.is_file()
    config = f" --config {report.config_file}" if wrote_config else ""
    return f"hardmail serve{config} --data-dir {report.into}"


def _print_restored(report: RestoreReport) -> None:
    typer.echo(f"restored {report.archive} into {report.into}: {report.files} files and the database "
               f"({_size(report.bytes)}), {report.messages} messages, in {report.seconds:.1f} s")
    typer.echo(f"  database  {report.database}")
    if report.schema_from != report.schema_to:
        typer.echo(f"  schema    migrated from revision {report.schema_from} to {report.schema_to}")
    else:
        typer.echo(f"  schema    revision {report.schema_to} (current)")
    if report.moved_aside is not None:
        typer.echo(f"  old data  moved aside to {report.moved_aside}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"Start it with: {start_command(report)}")


def _size(count: int) -> str:
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} bytes"


def _restore_selective(archive: Path, kind: str, value: str | None, identities: list[Path], as_folder: str | None,
                       json_output: bool, config: Path | None, data_dir: Path | None, full_only: bool) -> None:
    if full_only:
        fail("--force and --database-url go with --into", "a part (--only) is merged into the running server")
    if as_folder is not None and kind == "settings":
        fail("--as-folder goes with --only domain or --only mailbox", "drop --as-folder")
    try:
        selective = importlib.import_module("hardmail.ops.backup.selective")
    except ModuleNotFoundError as exc:
        if exc.name != "hardmail.ops.backup.selective":
            raise
        fail("selective restore is not available in this build", "restore the whole archive with --into DIR")
    cfg = load_cli_config(config, data_dir, use="read")  # into the data of an existing server
    errors: tuple[type[BaseException], ...] = tuple(
        error for error in (RestoreError, ArchiveError, ManifestError,
                            getattr(selective, "SelectiveRestoreError", None),
                            getattr(selective, "SelectiveError", None))
        if isinstance(error, type) and issubclass(error, BaseException))
    live_config = config_file_path(config)  # --only settings writes the archived one next to it
    try:
        with progress_bar() as progress:
            report = run_async(lambda: selective.restore_selective(cfg, archive, kind, value, identities, as_folder,
                                                                   progress, config_file=live_config))
    except errors as exc:
        fail(str(exc), str(getattr(exc, "hint", "") or "") or _restore_hint(str(exc)))
    if json_output:
        print_json(_jsonable(report))
        return
    lines = report.lines() if callable(getattr(report, "lines", None)) else [
        f"{key}: {item}" for key, item in _jsonable(report).items()]
    for line in lines:
        typer.echo(line)


def _jsonable(report: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(report) or isinstance(report, type):
        return {"result": str(report)}
    values = dataclasses.asdict(report)
    return {key: str(item) if isinstance(item, Path) else list(item) if isinstance(item, tuple) else item
            for key, item in values.items()}


# --- the progress bar ------------------------------------------------------------------------

def progress_bar() -> contextlib.AbstractContextManager[ByteProgress]:
    """The bar of (phase, done bytes, total bytes) on a terminal (standard error); nothing when
    it is not a terminal."""
    return byte_progress("reading")
