"""``hardmail account 2fa|app-password|import-hash|import-hashes|must-change``: credentials on the command line.

The face of :class:`hardmail.admin.credentials.CredentialService`. Secrets (app passwords,
recovery codes, the TOTP URI) are printed once, to standard output, and nowhere else.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import qrcode
import typer
from rich.progress import MofNCompleteColumn, Progress

from hardmail.admin import hash_batch
from hardmail.admin.cli_accounts import JsonOption, account_app
from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    changes_stored,
    err_console,
    fail,
    load_cli_config,
    print_json,
    print_table,
    read_only,
    run_async,
    with_store,
)
from hardmail.admin.credentials import CredentialService, TotpEnrolment, expiry_text
from hardmail.admin.service import AdminError
from hardmail.auth.legacy import SCHEME_NAMES
from hardmail.config.schema import Config
from hardmail.store.ports import StoreError
from hardmail.store.ports_credentials import SCOPES, AppPassword

T = TypeVar("T")

two_factor_app = typer.Typer(help="Two-factor authentication (TOTP) of an account.", no_args_is_help=True)
app_password_app = typer.Typer(
    help="App passwords: generated passwords for mail programs, each limited to some protocols.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Adds the commands to ``hardmail account`` (the typer of :mod:`hardmail.admin.cli_accounts`)."""
    account_app.add_typer(two_factor_app, name="2fa")
    account_app.add_typer(app_password_app, name="app-password")
    account_app.command("import-hash")(import_hash)
    account_app.command("import-hashes")(import_hashes)
    account_app.command("must-change")(must_change)


async def _with_service(cfg: Config, work: Callable[[CredentialService], Awaitable[T]]) -> T:
    return await with_store(cfg, lambda store: work(CredentialService(store, cfg.data_dir, cfg.auth.two_factor)))


def _run(cfg: Config, work: Callable[[CredentialService], Awaitable[T]]) -> T:
    try:
        return run_async(lambda: _with_service(cfg, work))
    except AdminError as exc:
        fail(exc.message, exc.hint)
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail(f"cannot use the data directory: {exc.strerror or exc}",
             "check that server.data_dir exists and is writable by this user")


# hardmail account 2fa ...


def _qr_text(uri: str) -> str:
    code = qrcode.QRCode(border=1)
    code.add_data(uri)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


@two_factor_app.command("enable")
@changes_stored
def two_factor_enable(address: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Turn on TOTP: shows a QR code, asks for a first code, prints 10 one-time recovery codes."""
    cfg = load_cli_config(config, data_dir)
    enrolment: TotpEnrolment = _run(cfg, lambda s: s.begin_two_factor(address))
    typer.echo("Scan this QR code with an authenticator app, or enter the URI by hand:\n")
    typer.echo(_qr_text(enrolment.uri))
    typer.echo(enrolment.uri + "\n")
    code = str(typer.prompt("Code shown by the app"))
    codes = _run(cfg, lambda s: s.confirm_two_factor(enrolment, code))
    typer.echo(f"two-factor authentication is on for {enrolment.address}")
    typer.echo("Recovery codes (each works once; keep them somewhere safe, they are not shown again):")
    for recovery in codes:
        typer.echo(f"  {recovery}")
    typer.echo("Mail programs now need an app password: `hardmail account app-password add "
               f"{enrolment.address} NAME --scope smtp --scope imap`")


@two_factor_app.command("disable")
@changes_stored
def two_factor_disable(address: str, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Turn off TOTP (and delete the recovery codes); the main password works in mail programs again."""
    key = _run(load_cli_config(config, data_dir), lambda s: s.disable_two_factor(address))
    typer.echo(f"two-factor authentication is off for {key}")


@two_factor_app.command("verify")
@changes_stored
def two_factor_verify(
    address: str,
    code: Annotated[str | None, typer.Option("--code", help="The code; prompted for when left out.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Check a TOTP code or a recovery code of an account (a used code is spent)."""
    cfg = load_cli_config(config, data_dir)
    typed = code if code is not None else str(typer.prompt("Code", hide_input=True))
    kind = _run(cfg, lambda s: s.verify_second_factor(address, typed))
    typer.echo(f"{'recovery code' if kind == 'recovery-code' else 'code'} accepted")


# hardmail account app-password ...

ScopeOption = Annotated[
    list[str],
    typer.Option("--scope", "-s", help=f"Protocol it may be used for: {', '.join(SCOPES)} (repeat for several)."),
]


@app_password_app.command("add")
@changes_stored
def app_password_add(
    address: str,
    name: Annotated[str, typer.Argument(help="What it is for, e.g. phone or laptop-thunderbird.")],
    scope: ScopeOption,
    expires_days: Annotated[int | None, typer.Option("--expires-days", help="Expire after this many days.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Generate an app password (shown once)."""
    cfg = load_cli_config(config, data_dir)
    record, secret = _run(cfg, lambda s: s.add_app_password(address, name, scope, expires_days))
    typer.echo(f"app password {record.name!r} for {record.address} "
               f"({', '.join(sorted(record.scopes))}; expires {expiry_text(record.expires_at)}):")
    typer.echo(f"  {secret}")
    typer.echo("It is shown only now; use it as the password in the mail program.")


def _app_password_row(app_password: AppPassword) -> dict[str, str]:
    return {
        "name": app_password.name,
        "scopes": ",".join(sorted(app_password.scopes)),
        "created_at": expiry_text(app_password.created_at),
        "expires_at": expiry_text(app_password.expires_at),
        "last_used_at": expiry_text(app_password.last_used_at) if app_password.last_used_at else "",
        "last_used_ip": app_password.last_used_ip or "",
    }


@app_password_app.command("list")
@read_only
def app_password_list(
    address: str, as_json: JsonOption = False, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """List an account's app passwords (names, scopes, expiry, last use; never the passwords)."""
    records = _run(load_cli_config(config, data_dir), lambda s: s.list_app_passwords(address))
    rows = [_app_password_row(record) for record in records]
    if as_json:
        print_json(rows)
        return
    headers = ("Name", "Scopes", "Created (UTC)", "Expires", "Last used (UTC)", "Last IP")
    print_table("App passwords", headers, [tuple(row.values()) for row in rows])


@app_password_app.command("revoke")
@changes_stored
def app_password_revoke(
    address: str, name: str, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Delete an app password: the programs using it can no longer log in."""
    key = _run(load_cli_config(config, data_dir), lambda s: s.revoke_app_password(address, name))
    typer.echo(f"app password {name.strip()!r} of {key} revoked")


# hardmail account import-hash | must-change


@changes_stored
def import_hash(
    address: str,
    scheme: Annotated[str | None, typer.Option(
        "--scheme", help=f"One of: {', '.join(SCHEME_NAMES)}; not needed when the hash has Dovecot's {{SCHEME}} "
                         "prefix or its own $id$ form.", show_default=False)] = None,
    hash_text: Annotated[
        str | None, typer.Option("--hash", help="The hash; read from standard input when left out.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Give an account a password hash exported from another server (upgraded at first login)."""
    text = hash_text if hash_text is not None else typer.get_text_stream("stdin").readline().strip()
    if not text:
        fail("no hash given", "pass --hash HASH or send the hash as the first line of standard input")
    done = _run(load_cli_config(config, data_dir), lambda s: s.import_hash(address, scheme, text))
    typer.echo(f"{done.scheme} hash imported for {done.address}; it becomes Argon2id at the first login")


@changes_stored
def import_hashes(
    file: Annotated[Path, typer.Argument(help="Dovecot passwd-file, or user:hash lines; - for standard input.",
                                         allow_dash=True, dir_okay=False)],
    scheme: Annotated[str | None, typer.Option(
        "--scheme", help="Scheme of the hashes that do not say theirs (no {SCHEME} prefix, no $id$ form).",
        show_default=False)] = None,
    domain: Annotated[str | None, typer.Option(
        "--domain", help="Domain of the user names that have none (Dovecot's auth_default_realm).",
        show_default=False)] = None,
    create: Annotated[bool, typer.Option("--create", help="Create the accounts that do not exist yet.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Import many password hashes from a file; prints a summary, exits 1 when a line failed."""
    text = _read_hash_file(file)
    cfg = load_cli_config(config, data_dir)
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=err_console,
                  disable=not err_console.is_terminal, transient=True) as progress:
        task = progress.add_task("importing", total=hash_batch.count_lines(text))
        report = _run(cfg, lambda s: hash_batch.import_hash_file(
            s, text, scheme=scheme, domain=domain, create=create, advance=lambda: progress.advance(task)))
    _print_report(report)
    if report.failed:
        raise typer.Exit(1)


def _read_hash_file(file: Path) -> str:
    if str(file) == "-":
        return typer.get_text_stream("stdin").read()
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}", "give a readable UTF-8 text file")


def _print_report(report: hash_batch.ImportReport) -> None:
    """Every skipped or failed line in file order, then the counts."""
    lines = [(o.number, "skipped", o.detail) for o in report.skipped] + [
        (o.number, "failed", o.detail) for o in report.failed]
    for number, kind, detail in sorted(lines):
        typer.echo(f"line {number}: {kind}: {detail}")
    created = f" ({report.created} account{'' if report.created == 1 else 's'} created)" if report.created else ""
    typer.echo(f"{len(report.imported)} imported{created}, {len(report.skipped)} skipped, {len(report.failed)} failed"
               + ("; each imported hash becomes Argon2id at the account's first login" if report.imported else ""))


@changes_stored
def must_change(
    address: str,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the flag instead of setting it.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Refuse the account's password in mail programs until a new one is set."""
    key = _run(load_cli_config(config, data_dir), lambda s: s.set_must_change(address, not clear))
    typer.echo(f"{key}: password change {'no longer required' if clear else 'required before the next login'}")
