"""``hardmail audit``: the security audit (docs/audit.md), and ``hardmail audit history``.

``hardmail audit`` probes the running server's own listeners (with a short-lived probe account),
checks the configuration, data and DNS, prints one finding per check (a table, ``--json``,
``--html FILE``) and keeps the run in the database (``--no-record`` not to). ``--target`` probes
the listeners of another server instead (``--i-own-this-server`` for one off loopback); only the
probes run then, and the run is kept under the target list as given.

Exit status: 0 nothing high or critical; 1 high or critical findings; 2 a usage error (a
``--target`` that cannot be read or is not allowed); 3 the audit could not run (another audit is
running, the database cannot be used, the report cannot be written: the message says what to do).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.status import Status

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    console,
    err_console,
    fail,
    load_cli_config,
    print_json,
    run_async,
    warn,
    with_store,
)
from hardmail.admin.datadir import DataDirError, require_initialised
from hardmail.admin.service import AdminError, AdminService
from hardmail.config.load import AUDIT_PASSWORD_ENV as PASSWORD_VARIABLE
from hardmail.config.schema import Config
from hardmail.ops.audit.catalog import check_modules
from hardmail.ops.audit.context import AuditContext, ProbeLogin
from hardmail.ops.audit.report import print_report, report_json
from hardmail.ops.audit.report_html import write_html
from hardmail.ops.audit.runner import OWN_TARGET, AuditReport, Progress, run_audit
from hardmail.ops.audit.targets import (
    TargetError,
    audit_lock,
    build_resolver,
    guess_local_domain,
    mailbox_purge,
    own_targets,
    parse_targets,
    probe_account,
    remove_leftover_probe_accounts,
    require_owned,
    resolve_targets,
    source_ips_for,
)
from hardmail.ops.log import configure_logging, log_event
from hardmail.store.ports import Store, StoreError

T = TypeVar("T")
USAGE = 2
CANNOT_RUN = 3  # operational errors, told apart from findings (1) by a deployment gate

audit_app = typer.Typer()


@dataclass(frozen=True)
class Plan:
    """What one ``hardmail audit`` run does."""

    target: str | None  # the --target list as given; None for the server's own audit
    domain: str | None
    login: ProbeLogin | None
    record: bool
    trigger: str
    i_own_it: bool = False  # --i-own-this-server


def register(app: typer.Typer) -> None:
    from hardmail.admin import cli_audit_history

    cli_audit_history.register(audit_app)
    app.add_typer(audit_app, name="audit")


JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON (nothing else on standard output).")]
HtmlOption = Annotated[Path | None, typer.Option(
    "--html", dir_okay=False, help="Also write the report as a self-contained HTML page to this file.")]
TargetOption = Annotated[str | None, typer.Option("--target", help=(
    "Probe these listeners of another server instead: HOST:PORT, [IPV6]:PORT or KIND=HOST:PORT, comma separated."))]
OwnOption = Annotated[bool, typer.Option(
    "--i-own-this-server", help="Allow a --target that is not a loopback address (only for a server you run).")]
DomainOption = Annotated[str | None, typer.Option("--domain", help=(
    "Domain the probes use (the probe account's; for --target: one the target accepts mail for)."))]
LoginOption = Annotated[str | None, typer.Option("--login", help=(
    f"Log in as this account for the authenticated probes instead of a probe account (password from "
    f"${PASSWORD_VARIABLE}, else asked)."))]
RecordOption = Annotated[bool, typer.Option(
    "--record/--no-record", help="Keep the run in the database (`hardmail audit history`).")]
ScheduledOption = Annotated[bool, typer.Option(
    "--scheduled", hidden=True, help="Run by the server's schedule: logs as the server does.")]


@audit_app.callback(invoke_without_command=True)
def audit_command(
    context: typer.Context, as_json: JsonOption = False, html: HtmlOption = None, target: TargetOption = None,
    i_own_it: OwnOption = False, domain: DomainOption = None, login: LoginOption = None, record: RecordOption = True,
    scheduled: ScheduledOption = False, config: ConfigOption = None, data_dir: DataDirOption = None,
) -> None:
    """Audit the server's security: probe its listeners like an attacker, check its configuration, data
    and DNS; one finding per check with the evidence, why it matters and the fix. Exit status 0 when
    nothing is high or critical, 1 otherwise."""
    if context.invoked_subcommand is not None:
        return
    cfg = load_cli_config(config, data_dir, use="none" if target is not None else "read")
    if scheduled:
        configure_logging(cfg.logging)
    if target is not None and record:
        _require_store_for_record(cfg)
    plan = Plan(target, domain, _login(login), record, "scheduled" if scheduled else "cli", i_own_it)
    report = _run_with_progress(cfg, plan, shown=not as_json and err_console.is_terminal)
    _output(report, as_json, html)
    raise typer.Exit(report.exit_status)


def _require_store_for_record(cfg: Config) -> None:
    try:
        require_initialised(cfg, database=True)
    except DataDirError as exc:
        fail(f"cannot keep this run: {exc}", "pass --no-record to audit the target without keeping the result",
             code=CANNOT_RUN)


def _login(address: str | None) -> ProbeLogin | None:
    if address is None:
        return None
    password = os.environ.get(PASSWORD_VARIABLE) or str(typer.prompt(f"Password of {address}", hide_input=True))
    domain = address.rpartition("@")[2]
    if not domain or "@" not in address:
        fail(f"--login {address!r} is not an address", "give the account's address, e.g. --login you@example.com",
             code=USAGE)
    return ProbeLogin(address, password, f"postmaster@{domain}")


def _output(report: AuditReport, as_json: bool, html: Path | None) -> None:
    if html is not None:
        try:
            write_html(report, html)
        except OSError as exc:
            fail(f"cannot write the HTML report to {html}: {exc.strerror or exc}",
                 "choose a file in a directory you can write", code=CANNOT_RUN)
    if as_json:
        print_json(report_json(report))
        return
    print_report(report, console)
    if html is not None:
        typer.echo(f"HTML report written to {html}", err=True)


# --- running it ---------------------------------------------------------------------------------

def _run_with_progress(cfg: Config, plan: Plan, shown: bool) -> AuditReport:
    with Status("auditing", console=err_console) as status:
        if not shown:
            status.stop()
        progress = _progress(status) if shown else None
        try:
            if plan.target is not None:
                return run_async(lambda: _target_audit(cfg, plan, progress))
            return run_async(lambda: _guarded(cfg, lambda store: _own_audit(cfg, store, plan, progress)))
        except TargetError as exc:
            status.stop()
            fail(exc.message, exc.hint, code=USAGE if exc.usage else CANNOT_RUN)
        except AdminError as exc:
            status.stop()
            fail(exc.message, exc.hint, code=CANNOT_RUN)
        except StoreError as exc:
            status.stop()
            fail(f"cannot use the database: {exc}", "check storage.url in the configuration and that the database "
                 "is reachable", code=CANNOT_RUN)


def _progress(status: Status) -> Progress:
    running: list[str] = []

    def update(module: str, phase: str) -> None:
        if phase == "start":
            running.append(module)
        elif module in running:
            running.remove(module)
        status.update(f"auditing: {', '.join(running) or 'finishing'}")

    return update


async def _guarded(cfg: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    with audit_lock(cfg.data_dir):
        return await with_store(cfg, work)


async def _own_audit(cfg: Config, store: Store, plan: Plan, progress: Progress | None) -> AuditReport:
    own = own_targets(cfg)
    admin = AdminService(store, cfg.auth.argon2, auth=cfg.auth, plus_separator=cfg.smtp.plus_separator)
    purge = mailbox_purge(store, cfg)
    removed = await remove_leftover_probe_accounts(admin, purge)
    if removed:
        log_event("audit.probe_accounts_removed", level="warning", accounts=removed,
                  detail="left by an audit that did not end")
    domain = plan.domain or await _first_domain(admin)
    ctx = AuditContext(cfg, build_resolver(cfg), own.targets, own_server=True, store=store, login=plan.login,
                       local_domain=domain, source_ips=source_ips_for(own.targets),
                       timeout=cfg.audit.probe_timeout, running=own.running)
    if plan.login is None and domain is not None and own.running:
        async with probe_account(admin, domain, purge) as login:
            ctx.login = login
            report = await run_audit(ctx, target=OWN_TARGET, progress=progress)
    else:
        report = await run_audit(ctx, target=OWN_TARGET, progress=progress)
    if plan.record:
        await _record(store, report, plan.trigger, cfg.audit.keep_runs)
    return report


async def _first_domain(admin: AdminService) -> str | None:
    domains = sorted(domain.name for domain in await admin.list_domains())
    return domains[0] if domains else None


async def _target_audit(cfg: Config, plan: Plan, progress: Progress | None) -> AuditReport:
    assert plan.target is not None
    specs = parse_targets(plan.target)
    require_owned(specs, i_own_it=plan.i_own_it)
    targets = await resolve_targets(specs, cfg.audit.probe_timeout)
    domain = plan.domain or (plan.login.address.rpartition("@")[2] if plan.login else None)
    if domain is None:
        domain = await guess_local_domain(targets, cfg.audit.probe_timeout)
        if domain is not None:
            warn(f"the probes send their test messages to postmaster@{domain} (its greeting names it and it "
                 "accepts that address; name another with --domain)")
        else:
            warn("no domain this server accepts mail for was found: the relay, smuggling and spoofing probes "
                 "need one; name it with --domain (and --login for submission ports)")
    ctx = AuditContext(cfg, build_resolver(cfg), targets, own_server=False, store=None, login=plan.login,
                       local_domain=domain, source_ips=source_ips_for(targets), timeout=cfg.audit.probe_timeout)
    probes = [module for module in check_modules() if module.probes]  # our own config and data are not the target's
    report = await run_audit(ctx, probes, target=plan.target, progress=progress)
    if plan.record:
        await with_store(cfg, lambda store: _record(store, report, plan.trigger, cfg.audit.keep_runs))
    return report


async def _record(store: Store, report: AuditReport, trigger: str, keep: int) -> None:
    try:
        run_id = await store.security.save_audit_run(report.to_run(trigger))
        pruned = await store.security.prune_audit_runs(keep)
    except Exception as exc:  # the report is still printed; the admin learns it was not kept
        log_event("audit.record_failed", level="error", error=type(exc).__name__, detail=str(exc)[:300])
        warn(f"the run was not kept in the database: {type(exc).__name__}: {str(exc)[:200]}")
        return
    log_event("audit.recorded", run=run_id, target=report.target, trigger=trigger, score=report.score,
              worst=report.worst.value, pruned=pruned)
