"""``hardmail range|ban ...`` and ``hardmail account logins``: access control on the command line,
through :class:`hardmail.admin.access_service.AccessService`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hardmail.admin.access_service import AccessService, RangeSpec, last_successful_login
from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    changes_stored,
    fail,
    load_cli_config,
    print_json,
    print_table,
    read_only,
    run_async,
    with_store,
)
from hardmail.admin.service import AdminError
from hardmail.config.schema import Config
from hardmail.policy.access import PROTOCOLS, Direction, IpRange, describe
from hardmail.policy.bans import Ban
from hardmail.store.ports import StoreError
from hardmail.store.ports_credentials import LoginEvent

T = TypeVar("T")

range_app = typer.Typer(help="IP ranges: what each address range may connect to and deliver.", no_args_is_help=True)
ban_app = typer.Typer(help="Bans: addresses refused after failed logins, or by hand.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    # Imported here: cli_accounts imports last_logins from this module for `account list`.
    from hardmail.admin.cli_accounts import account_app

    app.add_typer(range_app, name="range")
    app.add_typer(ban_app, name="ban")
    account_app.command("logins")(account_logins)


async def _with_service(cfg: Config, work: Callable[[AccessService], Awaitable[T]]) -> T:
    return await with_store(cfg, lambda store: work(AccessService(store, cfg)))


def _run(config: Path | None, data_dir: Path | None, work: Callable[[AccessService], Awaitable[T]]) -> T:
    cfg = load_cli_config(config, data_dir)
    try:
        return run_async(lambda: _with_service(cfg, work))
    except AdminError as exc:
        fail(exc.message, exc.hint)
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail(f"cannot open the database: {exc.strerror or exc}",
             "check that server.data_dir exists and is writable by this user")


def _when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds is not None else ""






# hardmail range ...

DIRECTIONS_HELP = ", ".join(d.value for d in Direction)


@range_app.command("add")
def range_add(
    name: str,
    addresses: Annotated[str, typer.Argument(help="CIDR network, LOW-HIGH addresses, or one address.")],
    priority: Annotated[int, typer.Option(help="The highest matching range wins.")] = 20,
    allow: Annotated[str, typer.Option(help=f"Protocols it may connect to: all, none or {', '.join(PROTOCOLS)}.")]
    = "all",
    deliver: Annotated[str, typer.Option(help=f"Directions it may deliver in: all, none or {DIRECTIONS_HELP}.")]
    = "all",
    require_auth: Annotated[str, typer.Option(help="Directions that need SMTP AUTH (same words).")]
    = "local-external,external-external",
    tls_for_auth: Annotated[bool, typer.Option(help="AUTH only inside TLS.")] = True,
    expires: Annotated[str | None, typer.Option(help="Remove the range after this long (e.g. 7d).")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add an IP range."""
    spec = RangeSpec(name, addresses, priority, allow, deliver, require_auth, tls_for_auth, expires)
    added = _run(config, data_dir, lambda s: s.add_range(spec))
    typer.echo(f"range {added.name} added ({added.lower} - {added.upper}, priority {added.priority})")


def _range_row(found: IpRange) -> dict[str, Any]:
    return {"name": found.name, "priority": found.priority, "lower": found.lower, "upper": found.upper,
            "protocols": sorted(found.protocols), "deliveries": sorted(d.value for d in found.deliveries),
            "auth_required": sorted(d.value for d in found.auth_required), "tls_for_auth": found.tls_for_auth,
            "expires_at": _when(found.expires_at), "builtin": found.builtin}


@range_app.command("list")
@read_only
def range_list(as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List the IP ranges (stored and built-in), highest priority first."""
    found = _run(config, data_dir, lambda s: s.ranges())
    rows = [_range_row(r) for r in sorted(found, key=lambda r: (-r.priority, r.name))]
    if as_json:
        print_json(rows)
        return
    cells = [(r["name"] + (" (built-in)" if r["builtin"] else ""), str(r["priority"]), f"{r['lower']} - {r['upper']}",
              ",".join(r["protocols"]), ",".join(r["auth_required"]) or "-", r["expires_at"]) for r in rows]
    print_table("IP ranges", ("Name", "Priority", "Addresses", "Connect", "AUTH required for", "Expires"), cells)


@range_app.command("remove")
@changes_stored
def range_remove(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Remove a stored IP range."""
    _run(config, data_dir, lambda s: s.remove_range(name))
    typer.echo(f"range {name} removed")


@range_app.command("test")
@read_only
def range_test(ip: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Show which range an address falls in, what it allows, and whether it is banned."""
    found, bans = _run(config, data_dir, lambda s: s.test(ip))
    if found is None:
        typer.echo(f"{ip}: no IP range matches; connections are refused")
    else:
        for line in describe(found):
            typer.echo(line)
    for ban in bans:
        typer.echo(f"banned: {ban.subject} until {_when(ban.expires_at)} ({ban.reason})")


# hardmail ban ...


def _ban_row(ban: Ban) -> dict[str, Any]:
    return {"subject": ban.subject, "kind": ban.kind, "reason": ban.reason, "created_at": _when(ban.created_at),
            "expires_at": _when(ban.expires_at), "offences": ban.offences, "by_admin": ban.by_admin}


@ban_app.command("list")
@read_only
def ban_list(
    include_expired: Annotated[bool, typer.Option("--all", help="Also show bans that have ended.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the bans in force."""
    rows = [_ban_row(b) for b in _run(config, data_dir, lambda s: s.bans(include_expired))]
    if as_json:
        print_json(rows)
        return
    cells = [(r["subject"], r["kind"], str(r["offences"]), r["expires_at"], r["reason"]) for r in rows]
    print_table("Bans", ("Address", "Kind", "Offence", "Until (UTC)", "Reason"), cells)


@ban_app.command("add")
def ban_add(
    ip: Annotated[str, typer.Argument(help="An address or a network (CIDR).")],
    duration: Annotated[str, typer.Option(help="How long, e.g. 1h, 7d.")] = "1d",
    reason: Annotated[str, typer.Option(help="Shown by `ban list` and logged.")] = "",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Ban an address or a network by hand."""
    ban = _run(config, data_dir, lambda s: s.add_ban(ip, duration, reason))
    typer.echo(f"{ban.subject} banned until {_when(ban.expires_at)}")


@ban_app.command("remove")
@changes_stored
def ban_remove(ip: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Lift a ban (its offence count is forgotten too)."""
    subject = _run(config, data_dir, lambda s: s.remove_ban(ip))
    typer.echo(f"ban on {subject} removed")


@ban_app.command("explain")
@read_only
def ban_explain(ip: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Say why an address is (or is not) refused."""
    for line in _run(config, data_dir, lambda s: s.explain(ip)):
        typer.echo(line)


@ban_app.command("export")
@read_only
def ban_export(
    nft: Annotated[bool, typer.Option("--nft", help="Write an nftables script (the only format so far).")] = False,
    table: Annotated[str, typer.Option(help="nftables table name (family inet).")] = "hardmail",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Export the bans in force for a firewall."""
    if not nft:
        fail("no export format chosen", "add --nft to write an nftables script")
    if not table.replace("_", "").isalnum():
        fail(f"{table!r} is not a usable nftables table name", "use letters, digits and underscores only")
    script = _run(config, data_dir, lambda s: s.nft_script(table))
    if output is None:
        typer.echo(script, nl=False)
        return
    try:
        output.write_text(script)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", "choose a writable path")
    typer.echo(f"nftables script written to {output}; apply it with: nft -f {output}")


# hardmail account logins ..., and the last-login column of hardmail account list


def last_logins(config: Path | None, data_dir: Path | None, addresses: Sequence[str]) -> dict[str, str]:
    """address -> time of its last successful login (UTC, ISO), for the accounts that have one."""

    async def work(service: AccessService) -> dict[str, str]:
        found = {a: await last_successful_login(service.store, a) for a in addresses}
        return {a: at.isoformat(timespec="seconds") for a, at in found.items() if at is not None}

    return _run(config, data_dir, work) if addresses else {}


def _login_row(event: LoginEvent) -> dict[str, Any]:
    return {"at": event.at.isoformat(timespec="seconds"), "kind": event.kind, "result": event.result,
            "protocol": event.protocol, "mechanism": event.mechanism, "client_ip": event.client_ip,
            "tls_version": event.tls_version, "detail": event.detail}


@read_only
def account_logins(
    address: str,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="How many events, newest first.")] = 50,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show an account's login history: time, source address, protocol, mechanism, TLS and result."""
    rows = [_login_row(e) for e in _run(config, data_dir, lambda s: s.logins(address, limit))]
    if as_json:
        print_json(rows)
        return
    cells = [(r["at"], r["kind"], r["result"], r["client_ip"], r["protocol"], r["mechanism"], r["tls_version"],
              r["detail"]) for r in rows]
    print_table("Logins", ("Time (UTC)", "Kind", "Result", "Address", "Protocol", "Mechanism", "TLS", "Detail"),
                 cells)
