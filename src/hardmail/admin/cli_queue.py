"""``hardmail queue ...``: see and steer the outbound queue, and manage routes (and the smarthost).

Each command loads the configuration, opens the store, does one thing through
:class:`hardmail.admin.queue_service.QueueAdmin` (or the route table) and closes the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from rich.text import Text

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    changes_stored,
    console,
    fail,
    load_cli_config,
    print_json,
    print_table,
    read_only,
    run_async,
    with_store,
)
from hardmail.admin.queue_service import QueueAdmin
from hardmail.auth.server_key import ServerKeyError, server_fernet
from hardmail.config.schema import Config
from hardmail.core.address import AddressError, normalize_domain
from hardmail.core.clock import SystemClock
from hardmail.delivery.assembly import build_services
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.queue import QueueNotFound
from hardmail.delivery.spool import SpoolError
from hardmail.store.ports import NotFound, Store, StoreError
from hardmail.store.ports_queue import QueueEntry, Route

T = TypeVar("T")

queue_app = typer.Typer(help="The outbound queue: mail waiting for delivery to other servers.", no_args_is_help=True)
route_app = typer.Typer(help="Routes: send mail for some domains (or all: '*', the smarthost) to a fixed host.",
                        no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
QueueIdArg = Annotated[str, typer.Argument(help="Queue id, as shown by `hardmail queue list`.")]
TlsMode = Literal["opportunistic", "starttls", "implicit", "none"]


def register(app: typer.Typer) -> None:
    app.add_typer(queue_app, name="queue")
    queue_app.add_typer(route_app, name="route")


# running one use-case


async def _with_admin(cfg: Config, work: Callable[[QueueAdmin], Awaitable[T]]) -> T:
    def admin(store: Store) -> Awaitable[T]:
        clock = SystemClock()
        services = build_services(cfg, store, MaildirStore(cfg.maildir_root, cfg.server.hostname), clock)
        return work(QueueAdmin(services, clock))

    return await with_store(cfg, admin)


def _run(config: Path | None, data_dir: Path | None, work: Callable[[QueueAdmin], Awaitable[T]]) -> T:
    cfg = load_cli_config(config, data_dir)
    try:
        return run_async(lambda: _with_admin(cfg, work))
    except (QueueNotFound, NotFound) as exc:
        fail(str(exc), "`hardmail queue list` shows the queued messages and their ids")
    except SpoolError as exc:
        fail(str(exc), "check server.data_dir and the spool directory's permissions")
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail(f"cannot open the queue: {exc.strerror or exc}", "check that server.data_dir exists and is writable")


# output


def _when(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def entry_row(entry: QueueEntry) -> dict[str, Any]:
    return {
        "queue_id": entry.queue_id, "sender": entry.sender, "size": entry.size,
        "origin_account": entry.origin_account, "created_at": _when(entry.created_at),
        "next_attempt_at": _when(entry.next_attempt_at), "attempts": entry.attempts,
        "last_error": entry.last_error, "held": entry.held, "delay_notified": entry.delay_notified,
        "recipients": [
            {"address": r.address, "state": r.state, "last_code": r.last_code, "last_text": r.last_text,
             "remote_mta": r.remote_mta}
            for r in entry.recipients
        ],
    }






def _state_of(entry: QueueEntry) -> str:
    if entry.held:
        return "held"
    return "active" if entry.claimed_by else "waiting"


# queue commands


@queue_app.command("list")
@read_only
def list_queue(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List queued messages, oldest first."""
    entries = _run(config, data_dir, lambda admin: admin.list())
    if as_json:
        print_json([entry_row(e) for e in entries])
        return
    print_table("Queued messages", ["Queue id", "State", "From", "Pending", "Size", "Attempts", "Next attempt",
                               "Last error"],
           [[e.queue_id, _state_of(e), e.sender or "<>", ", ".join(r.address for r in e.pending),
             str(e.size), str(e.attempts), _when(e.next_attempt_at), e.last_error[:120]] for e in entries])


@queue_app.command("show")
@read_only
def show(queue_id: QueueIdArg, config: ConfigOption = None, data_dir: DataDirOption = None,
         as_json: JsonOption = False) -> None:
    """Show one queued message: its recipients' states and its headers."""
    entry, headers = _run(config, data_dir, lambda admin: admin.show(queue_id))
    row = entry_row(entry)
    if as_json:
        print_json({**row, "headers": headers.decode("utf-8", "replace")})
        return
    for key in ("queue_id", "sender", "origin_account", "size", "created_at", "next_attempt_at", "attempts",
                "held", "last_error"):
        console.print(Text(f"{key}: {row[key]}"))
    print_table("Recipients", ["Address", "State", "Last reply", "Remote MTA"],
           [[r.address, r.state, f"{r.last_code or ''} {r.last_text}".strip(), r.remote_mta]
            for r in entry.recipients])
    console.print(Text(headers.decode("utf-8", "replace")))


@queue_app.command("retry")
@changes_stored
def retry(queue_id: Annotated[str | None, typer.Argument(help="Queue id; omit with --all.")] = None,
          all_messages: Annotated[bool, typer.Option("--all", help="Retry every queued message.")] = False,
          config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Make a message (or every message) due for delivery now."""
    if (queue_id is None) == (not all_messages):
        raise typer.BadParameter("give either a queue id or --all (not both)")
    count = _run(config, data_dir, lambda admin: admin.retry(queue_id))
    typer.echo(f"{count} message(s) due for delivery now")


@queue_app.command("hold")
@changes_stored
def hold(queue_id: QueueIdArg, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Keep a message in the queue without trying to deliver it."""
    _run(config, data_dir, lambda admin: admin.hold(queue_id))
    typer.echo(f"held {queue_id}")


@queue_app.command("release")
@changes_stored
def release(queue_id: QueueIdArg, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Let a held message be delivered again."""
    _run(config, data_dir, lambda admin: admin.release(queue_id))
    typer.echo(f"released {queue_id}")


@queue_app.command("delete")
@changes_stored
def delete(queue_id: QueueIdArg, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Remove a message from the queue without telling its sender."""
    _run(config, data_dir, lambda admin: admin.delete(queue_id))
    typer.echo(f"deleted {queue_id}")


@queue_app.command("bounce")
@changes_stored
def bounce(queue_id: QueueIdArg, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Return a message to its sender with a delivery failure notice, and remove it."""
    where = _run(config, data_dir, lambda admin: admin.bounce(queue_id))
    typer.echo(f"bounced {queue_id}" + (f" (notice: {where})" if where else " (null sender: no notice)"))


# routes


def _check_pattern(pattern: str) -> str:
    if pattern == "*":
        return pattern
    try:
        if pattern.startswith("*."):
            return "*." + normalize_domain(pattern[2:])
        return normalize_domain(pattern)
    except AddressError as exc:
        raise typer.BadParameter(f"{pattern!r}: {exc} (use example.org, *.example.org or *)") from None


def _split_target(target: str, tls: TlsMode) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep:
        return target, 465 if tls == "implicit" else 25
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"{target!r} is not HOST or HOST:PORT")
    return host.strip("[]"), int(port)


def _read_secret() -> str:
    password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
    if not password:
        fail("no password on standard input",
             "send it as the first line, e.g. `printf '%s\\n' \"$PASSWORD\" | hardmail queue route set ... "
             "--password-stdin`")
    return password


async def _set_route(cfg: Config, route: Route) -> None:
    await with_store(cfg, lambda store: store.queue.set_route(route))


@route_app.command("set")
def set_route(
    pattern: Annotated[str, typer.Argument(help="example.org, *.example.org (its subdomains) or * (smarthost).")],
    target: Annotated[str, typer.Argument(help="HOST or HOST:PORT to send that mail to.")],
    tls: Annotated[TlsMode, typer.Option(help="opportunistic, starttls (required, verified), implicit (port 465, "
                                              "verified) or none.")] = "opportunistic",
    username: Annotated[str, typer.Option(help="AUTH user name; the password is read with --password-stdin.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the AUTH password from the first "
                                                 "line of standard input.")] = False,
    config: ConfigOption = None, data_dir: DataDirOption = None,
) -> None:
    """Add or replace a route; credentials are stored encrypted with the server key."""
    pattern = _check_pattern(pattern)
    host, port = _split_target(target, tls)
    if username and tls in ("none", "opportunistic"):
        fail(f"credentials are only sent over verified TLS, and --tls {tls} does not verify the server",
             "use --tls starttls or --tls implicit")
    if bool(username) != password_stdin:
        fail("a route with AUTH needs both --username and --password-stdin", "give both, or neither")
    cfg = load_cli_config(config, data_dir)
    try:
        token = server_fernet(cfg.data_dir).encrypt(_read_secret().encode()).decode() if username else ""
        route = Route(pattern, host, port, tls, username, token, SystemClock().now())
        run_async(lambda: _set_route(cfg, route))
    except ServerKeyError as exc:
        fail(str(exc))
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    typer.echo(f"route {pattern} -> {host}:{port} (tls {tls}{', with AUTH' if username else ''})")


async def _routes(cfg: Config, pattern: str | None) -> list[Route]:
    async def work(store: Store) -> list[Route]:
        if pattern is not None:
            await store.queue.remove_route(pattern)
        return await store.queue.list_routes()

    return await with_store(cfg, work)


@route_app.command("list")
@read_only
def list_routes(config: ConfigOption = None, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """List routes (the password is never shown)."""
    cfg = load_cli_config(config, data_dir)
    try:
        routes = run_async(lambda: _routes(cfg, None))
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    rows: list[dict[str, Any]] = [
        {"pattern": r.pattern, "host": r.host, "port": r.port, "tls": r.tls, "username": r.username,
         "has_password": bool(r.password_encrypted)} for r in routes
    ]
    if as_json:
        print_json(rows)
        return
    print_table("Routes", ["Pattern", "Host", "Port", "TLS", "User"],
           [[r.pattern, r.host, str(r.port), r.tls, r.username] for r in routes])


@route_app.command("remove")
@changes_stored
def remove_route(pattern: Annotated[str, typer.Argument(help="The route's pattern, as listed.")],
                 config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Remove a route; mail for those domains goes to their MX hosts again."""
    cfg = load_cli_config(config, data_dir)
    try:
        run_async(lambda: _routes(cfg, pattern))
    except NotFound as exc:
        fail(str(exc), "`hardmail queue route list` shows the routes")
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    typer.echo(f"removed route {pattern}")
