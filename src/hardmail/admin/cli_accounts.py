"""``hardmail domain|account|alias ...``: the command-line face of :mod:`hardmail.admin.service`.

Each command loads the configuration, opens the store at ``database_url``, brings its schema up
to date, does one thing through :class:`AdminService` and closes the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hardmail.admin.cli_access import last_logins
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
    warn,
    with_store,
)
from hardmail.admin.service import AdminError, AdminService
from hardmail.config.schema import Config
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.core.clock import SystemClock
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.store.ports import Account, Alias, Domain, NotFound, Store, StoreError

T = TypeVar("T")

domain_app = typer.Typer(help="Mail domains hosted here.", no_args_is_help=True)
account_app = typer.Typer(help="Accounts: mailboxes that can log in.", no_args_is_help=True)
alias_app = typer.Typer(
    help="Aliases: addresses that forward to other addresses (@domain is a catch-all).",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DomainFilter = Annotated[
    str | None, typer.Option("--domain", help="Only those of this domain.", show_default=False)
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of prompting.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(domain_app, name="domain")
    app.add_typer(account_app, name="account")
    app.add_typer(alias_app, name="alias")


# running one use-case


def _service(cfg: Config, store: Store) -> AdminService:
    return AdminService(store, cfg.auth.argon2, auth=cfg.auth, plus_separator=cfg.smtp.plus_separator,
                        mailboxes=build_mailbox_store(cfg, store, SystemClock()))


def _run(
    config: Path | None, data_dir: Path | None, work: Callable[[AdminService], Awaitable[T]]
) -> T:
    cfg = load_cli_config(config, data_dir)
    return _run_on_store(cfg, lambda store: work(_service(cfg, store)))


def _run_on_store(cfg: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    try:
        return run_async(lambda: with_store(cfg, work))
    except AdminError as exc:
        fail(exc.message, exc.hint)
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail(
            f"cannot open the database: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename else ""),
            "check that server.data_dir exists and is writable by this user",
        )


def _read_password(from_stdin: bool) -> str:
    if not from_stdin:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    password = typer.get_text_stream("stdin").readline().rstrip("\r\n")
    if not password:
        fail(
            "no password on standard input",
            "send the password as the first line, e.g. "
            "`printf '%s\\n' \"$PASSWORD\" | hardmail account add ADDRESS --password-stdin`",
        )
    return password


# output


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""






def _domain_row(domain: Domain) -> dict[str, Any]:
    return {"name": domain.name, "enabled": domain.enabled, "created_at": _when(domain.created_at)}


def _account_row(account: Account) -> dict[str, Any]:
    return {
        "address": account.address,
        "display_name": account.display_name,
        "enabled": account.enabled,
        "frozen": account.frozen,
        "created_at": _when(account.created_at),
    }


def _alias_row(alias: Alias) -> dict[str, Any]:
    return {
        "source": alias.source,
        "targets": list(alias.targets),
        "catch_all": alias.is_catch_all,
        "enabled": alias.enabled,
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# hardmail domain ...


@domain_app.command("add")
def domain_add(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Host a new mail domain."""
    domain = _run(config, data_dir, lambda service: service.add_domain(name))
    typer.echo(f"domain {domain.name} added")


@domain_app.command("list")
@read_only
def domain_list(
    as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """List the hosted domains."""
    rows = [_domain_row(d) for d in _run(config, data_dir, lambda s: s.list_domains())]
    if as_json:
        print_json(rows)
        return
    cells = [(r["name"], _yes_no(r["enabled"]), r["created_at"]) for r in rows]
    print_table("Domains", ("Domain", "Enabled", "Created (UTC)"), cells)


@domain_app.command("remove")
@changes_stored
def domain_remove(name: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Stop hosting a domain (refused while it has accounts or aliases)."""
    removed = _run(config, data_dir, lambda service: service.remove_domain(name))
    typer.echo(f"domain {removed} removed")


# hardmail account ...


@account_app.command("add")
def account_add(
    address: str,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an account; the password is prompted for (twice) unless --password-stdin."""
    password = _read_password(password_stdin)
    account = _run(config, data_dir, lambda s: s.add_account(address, password, name))
    typer.echo(f"account {account.address} created")


LegacyOption = Annotated[
    bool, typer.Option("--legacy", help="Only accounts whose password hash is still an imported legacy one.")
]


@account_app.command("list")
@read_only
def account_list(
    domain: DomainFilter = None,
    legacy: LegacyOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the accounts, of every domain or of one."""
    if legacy:
        _list_legacy(config, data_dir, as_json)
        return
    accounts = _run(config, data_dir, lambda s: s.list_accounts(domain))
    last = last_logins(config, data_dir, [a.address for a in accounts])
    rows = [{**_account_row(a), "last_login": last.get(a.address, "")} for a in accounts]
    if as_json:
        print_json(rows)
        return
    cells = [
        (r["address"], r["display_name"], _yes_no(r["enabled"]) + (" (frozen)" if r["frozen"] else ""),
         r["created_at"], r["last_login"]) for r in rows
    ]
    print_table("Accounts", ("Address", "Name", "Enabled", "Created (UTC)", "Last login (UTC)"), cells)


def _list_legacy(config: Path | None, data_dir: Path | None, as_json: bool) -> None:
    found = _run(config, data_dir, lambda service: service.list_legacy_accounts())
    rows = [{"address": address, "scheme": scheme} for address, scheme in found]
    if as_json:
        print_json(rows)
        return
    print_table("Accounts on legacy hashes", ("Address", "Scheme"), [(r["address"], r["scheme"]) for r in rows])
    count = len(rows)
    typer.echo(f"{count} account{'' if count == 1 else 's'} still on legacy hashes "
               "(each is upgraded to Argon2id at its next successful login)")


@account_app.command("passwd")
@changes_stored
def account_passwd(
    address: str,
    password_stdin: PasswordStdinOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a new password for an account."""
    password = _read_password(password_stdin)
    changed = _run(config, data_dir, lambda service: service.set_password(address, password))
    typer.echo(f"password of account {changed} changed")


@account_app.command("disable")
@changes_stored
def account_disable(
    address: str, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Disable an account: its logins and mail sent to it are refused; stored mail is kept."""
    key = _run(config, data_dir, lambda service: service.set_account_enabled(address, False))
    typer.echo(f"account {key} disabled")


@account_app.command("enable")
@changes_stored
def account_enable(
    address: str, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Enable a disabled account again."""
    key = _run(config, data_dir, lambda service: service.set_account_enabled(address, True))
    typer.echo(f"account {key} enabled")


ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (kept in the account's login history, never sent to clients).")
]


@account_app.command("freeze")
def account_freeze(
    address: str, reason: ReasonOption = "", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Freeze an account (e.g. phished): no login, no sending, open sessions end; mail is still received."""
    key = _run(config, data_dir, lambda service: service.freeze_account(address, reason))
    typer.echo(f"account {key} frozen; its queued outgoing mail is held (`hardmail queue list`)")


@account_app.command("unfreeze")
def account_unfreeze(
    address: str, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Let a frozen account log in and send again."""
    key = _run(config, data_dir, lambda service: service.unfreeze_account(address))
    typer.echo(f"account {key} unfrozen")


DigestState = Annotated[str, typer.Argument(help="on or off.", metavar="on|off")]


@account_app.command("digest")
@changes_stored
def account_digest(
    address: str, state: DigestState, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Turn the account's weekly security digest on or off (docs/user-notices.md)."""
    if state.lower() not in ("on", "off"):
        fail(f"expected on or off, not {state!r}", f"`hardmail account digest {address} on`")
    cfg = load_cli_config(config, data_dir)
    key = _run_on_store(cfg, lambda store: _set_digest(store, address, state.lower() == "on"))
    typer.echo(f"weekly security digest of {key} {state.lower()}")
    if state.lower() == "on" and not (cfg.notices.enabled and cfg.notices.weekly_digest):
        warn("the digest is not sent while notices.enabled or notices.weekly_digest is false")


async def _set_digest(store: Store, address: str, wanted: bool) -> str:
    try:
        key = parse_address_arg(address).key
    except AddressError as exc:
        raise AdminError(f"invalid address {address!r}: {exc}", "give an address such as alice@example.org") from None
    try:
        await store.security.set_weekly_digest(key, wanted)
    except NotFound:
        raise AdminError(f"no account {key}", "`hardmail account list` shows the accounts") from None
    return key


@account_app.command("remove")
@changes_stored
def account_remove(
    address: str, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Delete an account (its mail and mailbox index are left in place: adding it again gives them back)."""
    removed = _run(config, data_dir, lambda service: service.remove_account(address))
    typer.echo(f"account {removed} removed")


# hardmail alias ...


@alias_app.command("add")
def alias_add(
    source: Annotated[str, typer.Argument(help="local@domain, or @domain for a catch-all.")],
    targets: Annotated[list[str], typer.Argument(help="One or more addresses to deliver to.")],
    allow_missing: Annotated[bool, typer.Option(
        "--allow-missing", help="Accept targets in hosted domains that are not accounts or aliases yet (warns).",
    )] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Forward mail for SOURCE to one or more TARGET addresses (loops and unknown local targets are refused)."""
    added = _run(config, data_dir, lambda service: service.add_alias(source, targets, allow_missing=allow_missing))
    alias = added.alias
    kind = "catch-all" if alias.is_catch_all else "alias"
    typer.echo(f"{kind} {alias.source} → {', '.join(alias.targets)} created")
    for missing in added.missing:
        warn(f"{missing} is not an account or alias yet: mail for it is not delivered until it exists")


@alias_app.command("list")
@read_only
def alias_list(
    domain: DomainFilter = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the aliases, of every domain or of one."""
    rows = [_alias_row(a) for a in _run(config, data_dir, lambda s: s.list_aliases(domain))]
    if as_json:
        print_json(rows)
        return
    cells = [(r["source"], ", ".join(r["targets"]), _yes_no(r["enabled"])) for r in rows]
    print_table("Aliases", ("Alias", "Delivers to", "Enabled"), cells)


@alias_app.command("remove")
@changes_stored
def alias_remove(source: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Delete an alias or catch-all."""
    removed = _run(config, data_dir, lambda service: service.remove_alias(source))
    typer.echo(f"alias {removed} removed")
