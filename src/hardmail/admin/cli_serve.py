"""``hardmail serve``: start the server, print where it listens and what it uses."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hardmail.admin.cli_common import ConfigOption, DataDirOption, console, fail, load_cli_config
from hardmail.app import RunningServer, run_serve
from hardmail.config.warnings import insecure_warnings
from hardmail.ops.logfile import LogFileError


def _overrides(smtp: list[str] | None, submission: list[str] | None, submissions: list[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key, values in (("smtp", smtp), ("submission", submission), ("submissions", submissions)):
        if values:
            overrides[f"listen.{key}"] = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return overrides


def _print_started(server: RunningServer) -> None:
    config = server.context.config
    console.print(f"[bold green]hardmail is running[/] as [bold]{config.server.hostname}[/]")
    for bound in server.bound:
        console.print(f"  {bound.kind:<12} {bound}")
    console.print(f"  data dir     {config.data_dir}")
    console.print(f"  database     {config.database_url.split('@')[-1]}")
    for cert in server.context.tls.certificate_summary():
        kind = "self-signed " if cert.get("self_signed") else ""
        console.print(f"  certificate  {kind}{', '.join(cert.get('hostnames', []))} "
                      f"(SHA-256 {str(cert.get('sha256', ''))[:23]}...)")
    for warning in insecure_warnings(config):
        console.print(f"[yellow]warning:[/] {warning}")
    console.print("Stop with Ctrl-C. Add mail users with `hardmail domain add` and `hardmail account add`.")


def serve_command(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    listen_smtp: Annotated[list[str] | None, typer.Option("--listen-smtp", metavar="HOST:PORT",
                                                          help="MX listener(s), replaces listen.smtp.")] = None,
    listen_submission: Annotated[list[str] | None, typer.Option("--listen-submission", metavar="HOST:PORT",
                                                                help="Submission (STARTTLS) listener(s).")] = None,
    listen_submissions: Annotated[list[str] | None, typer.Option("--listen-submissions", metavar="HOST:PORT",
                                                                 help="Implicit-TLS listener(s).")] = None,
) -> None:
    """Run the mail server in the foreground."""
    cfg = load_cli_config(config, data_dir, _overrides(listen_smtp, listen_submission, listen_submissions))
    try:
        run_serve(cfg, on_started=_print_started)
    except LogFileError as exc:  # its message says what is wrong with logging.file and what to do
        fail(f"cannot start: {exc}")
    except OSError as exc:
        fail(f"cannot start: {exc}", "is another program using that port? choose others with --listen-smtp etc.")
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)

