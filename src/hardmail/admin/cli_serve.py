"""``hardmail serve``: start the server, print where it listens and what it uses.

Start-up failures end with one line that names what failed and why (the address and the cause
of a listener that cannot be opened, another server on the same data directory, a data
directory the user cannot write, a full disk, a database of a newer hardmail, a failed backup
before a schema upgrade), never a traceback.

The first process applies pending schema migrations after a full backup
(:mod:`hardmail.ops.backup.upgrade`); ``--no-backup`` skips that backup, with a warning.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    console,
    fail,
    fail_if_disk_full,
    load_cli_config,
    warn,
)
from hardmail.admin.datadir import user_name
from hardmail.app import RunningServer, run_serve
from hardmail.auth.server_key import ServerKeyError
from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings
from hardmail.core.diskfull import is_disk_full
from hardmail.ops.backup.upgrade import UpgradeOptions, config_file_in_use
from hardmail.ops.logfile import LogFileError
from hardmail.ops.runstate import AnotherServerRunning, ServerLock
from hardmail.server.listen_errors import ListenError
from hardmail.server.listener import PROTOCOL_OF_KIND, served_kinds, unserved_listeners
from hardmail.server.prefork import WorkerStartError, worker_count
from hardmail.server.tls import TlsError
from hardmail.store.ports import StoreError
from hardmail.store.sql.migrate import SchemaError


def _overrides(listen: dict[str, list[str] | None]) -> dict[str, Any]:
    """``--listen-KIND`` values (repeated, or comma-separated) replacing ``listen.KIND``."""
    overrides: dict[str, Any] = {}
    for key, values in listen.items():
        if values:
            overrides[f"listen.{key}"] = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return overrides


def _print_started(server: RunningServer) -> None:
    config = server.context.config
    console.print(f"[bold green]hardmail is running[/] as [bold]{config.server.hostname}[/]")
    for bound in server.bound:
        console.print(f"  {bound.kind:<12} {bound}")
    for kind, address in unserved_listeners(config):
        console.print(f"  {kind:<12} {address} [yellow](not served: this build has no "
                      f"{PROTOCOL_OF_KIND[kind].upper()} server)[/]")
    console.print(f"  data dir     {config.data_dir}")
    console.print(f"  database     {config.database_url.split('@')[-1]}")
    for cert in server.context.tls.certificate_summary():
        kind = "self-signed " if cert.get("self_signed") else ""
        console.print(f"  certificate  {kind}{', '.join(cert.get('hostnames', []))} "
                      f"(SHA-256 {str(cert.get('sha256', ''))[:23]}...)")
    for warning in insecure_warnings(config):
        console.print(f"[yellow]warning:[/] {warning}")
    console.print("Stop with Ctrl-C. Add mail users with `hardmail domain add` and `hardmail account add`.")


def _listen_option(flag: str, help_text: str) -> Any:
    return typer.Option(flag, metavar="HOST:PORT", help=help_text)


ListenValues = list[str] | None


def serve_command(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    listen_smtp: Annotated[ListenValues, _listen_option(
        "--listen-smtp", "MX listener(s), replaces listen.smtp.")] = None,
    listen_submission: Annotated[ListenValues, _listen_option(
        "--listen-submission", "Submission (STARTTLS) listener(s).")] = None,
    listen_submissions: Annotated[ListenValues, _listen_option(
        "--listen-submissions", "Implicit-TLS listener(s).")] = None,
    listen_imap: Annotated[ListenValues, _listen_option("--listen-imap", "IMAP (STARTTLS) listener(s).")] = None,
    listen_imaps: Annotated[ListenValues, _listen_option("--listen-imaps", "IMAP implicit-TLS listener(s).")] = None,
    listen_pop3: Annotated[ListenValues, _listen_option("--listen-pop3", "POP3 (STLS) listener(s).")] = None,
    listen_pop3s: Annotated[ListenValues, _listen_option("--listen-pop3s", "POP3 implicit-TLS listener(s).")] = None,
    no_backup: Annotated[bool, typer.Option("--no-backup", help=(
        "Upgrade a database schema without the full backup taken first (at your own risk)."))] = False,
) -> None:
    """Run the mail server in the foreground."""
    listen = {"smtp": listen_smtp, "submission": listen_submission, "submissions": listen_submissions,
              "imap": listen_imap, "imaps": listen_imaps, "pop3": listen_pop3, "pop3s": listen_pop3s}
    cfg = load_cli_config(config, data_dir, _overrides(listen))
    lock = _lock(cfg)
    upgrade = UpgradeOptions(backup=not no_backup, config_file=config_file_in_use(config), warn=warn)
    try:
        run_serve(cfg, on_started=_print_started, upgrade=upgrade)
    except LogFileError as exc:  # its message says what is wrong with logging.file and what to do
        fail(f"cannot start: {exc}")
    except KeyboardInterrupt:
        pass
    except (ListenError, TlsError, ServerKeyError) as exc:
        fail(str(exc) if isinstance(exc, ListenError) else f"cannot start: {exc}")
    except WorkerStartError as exc:
        _fail_worker_start(cfg, exc)
    except SchemaError as exc:  # a newer schema, a failed backup before an upgrade
        fail(f"cannot start: {exc}", exc.hint)
    except StoreError as exc:
        fail_if_disk_full(exc, cfg.data_dir)
        fail(f"cannot start: {exc}", "check storage.url in the configuration and that the database is reachable")
    except Exception as exc:
        _fail_start(cfg, exc)
    finally:
        lock.release()


def _lock(cfg: Config) -> ServerLock:
    """Hold the data directory for this server's lifetime, or exit: one server per directory."""
    listeners = [f"{kind}={address}" for kind in served_kinds() for address in getattr(cfg.listen, kind)]
    try:
        return ServerLock.acquire(cfg.data_dir, {"workers": worker_count(cfg), "listeners": listeners})
    except AnotherServerRunning as exc:
        fail(str(exc), "stop that server first (`hardmail status` shows it), or give this one another --data-dir")
    except Exception as exc:
        _fail_start(cfg, exc)


def _fail_start(cfg: Config, exc: Exception) -> NoReturn:
    """One line for a start-up failure; an unexpected one keeps its traceback (a bug to report)."""
    fail_if_disk_full(exc, cfg.data_dir)
    if isinstance(exc, PermissionError):
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"cannot start: cannot write{where}: permission denied for user {user_name()}")
    if isinstance(exc, OSError):
        fail(f"cannot start: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""))
    raise exc


def _fail_worker_start(cfg: Config, exc: WorkerStartError) -> NoReturn:
    """One line for a worker that failed before it served: its error, mapped as in one process
    when the worker's exception came along, else the worker's own one-line reason."""
    cause = exc.__cause__
    if isinstance(cause, (LogFileError, TlsError, ServerKeyError)):
        fail(f"cannot start: {cause}")
    if isinstance(cause, ListenError):
        fail(str(cause))
    if isinstance(cause, OSError) or (cause is not None and is_disk_full(cause, cfg.data_dir)):
        _fail_start(cfg, cause)  # type: ignore[arg-type]  # an OSError or a full disk: never re-raised
    fail(f"cannot start: {exc}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)

