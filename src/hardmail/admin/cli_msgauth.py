"""``hardmail dkim generate|rotate|show DOMAIN`` and ``hardmail dns [check] DOMAIN``."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    console,
    fail,
    load_cli_config,
    read_only,
    read_only_files,
    run_async,
    warn,
    with_store,
)
from hardmail.config.schema import Config
from hardmail.core.address import AddressError
from hardmail.msgauth import dnsadvice
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys, PublicRecord
from hardmail.msgauth.dns import DnsPythonResolver

dkim_app = typer.Typer(help="DKIM keys: generate, rotate and show them.", no_args_is_help=True)
DomainArgument = Annotated[str, typer.Argument(help="A hosted domain, e.g. example.org.")]
STATUS_STYLE = {"ok": "green", "missing": "red", "wrong": "yellow"}


def _domain_keys(config: Config, domain: str) -> DomainKeys:
    try:
        return DomainKeys(config.data_dir, domain)
    except AddressError as exc:
        fail(f"{domain!r} is not a domain name: {exc}", "give the domain as example.org")


def _print_records(keys: DomainKeys, records: list[PublicRecord]) -> None:
    for record in records:
        advice = dnsadvice.Advice(record.name(keys.domain), "TXT", dnsadvice.quoted_txt(record.txt), "")
        console.print(escape(advice.zone_line()), highlight=False)


@dkim_app.command("generate")
def generate(domain: DomainArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Make the first DKIM keys of DOMAIN (RSA 2048 and Ed25519) and print their DNS records."""
    keys = _domain_keys(load_cli_config(config, data_dir), domain)
    try:
        generation = keys.generate(time.time())
    except DkimKeyError as exc:
        fail(str(exc))
    console.print(f"DKIM keys for {keys.domain} are in {keys.directory}; mail is signed with them now.")
    console.print("Publish these records:")
    _print_records(keys, keys.public_records(generation))


@dkim_app.command("rotate")
@read_only_files
def rotate(domain: DomainArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Make new DKIM keys for DOMAIN; they sign once their DNS records are seen, the old ones retire."""
    loaded = load_cli_config(config, data_dir)
    keys = _domain_keys(loaded, domain)
    try:
        generation = keys.rotate(time.time())
    except DkimKeyError as exc:
        fail(str(exc))
    console.print(f"New DKIM selectors {', '.join(generation.selectors)} for {keys.domain}. Publish:")
    _print_records(keys, keys.public_records(generation))
    grace = loaded.dkim.rotation_grace_days
    console.print(f"The server switches to them once it sees these records; the old keys stay published "
                  f"for {grace:g} days, then `hardmail dns {keys.domain}` stops listing them.")


@dkim_app.command("show")
@read_only_files
def show(domain: DomainArgument, config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List the DKIM key generations of DOMAIN and their states."""
    keys = _domain_keys(load_cli_config(config, data_dir), domain)
    try:
        generations = keys.generations()
    except DkimKeyError as exc:
        fail(str(exc))
    if not generations:
        fail(f"{keys.domain} has no DKIM keys", f"run `hardmail dkim generate {keys.domain}`")
    for generation in generations:
        until = f" until {time.strftime('%Y-%m-%d', time.gmtime(generation.retire_after))}" \
            if generation.retire_after else ""
        console.print(f"{generation.name}: {generation.state}{until} (selectors {', '.join(generation.selectors)})")


def _advice(config: Config, domain: str) -> list[dnsadvice.Advice]:
    keys = _domain_keys(config, domain)
    try:
        records = [r for g in keys.generations() for r in keys.public_records(g)]
    except DkimKeyError as exc:
        fail(str(exc))
    served = dnsadvice.Served(submission=bool(config.listen.submission), submissions=bool(config.listen.submissions))
    return dnsadvice.advise(keys.domain, config.server.hostname, records, served)


def _host_name_warning(config: Config, domain: str) -> str | None:
    """The warning for a ``server.hostname`` that other servers cannot reach, or None."""
    problem = dnsadvice.host_name_problem(config.server.hostname)
    if problem is None:
        return None
    example = _example_host_name(domain)
    return (f"the server's host name {config.server.hostname!r} is not a public name ({problem}): an MX record "
            "naming it would be wrong, so the MX, SPF and SRV records are left out and DMARC is advised at "
            f"p=none. Set the name that resolves to this machine, e.g. `[server] hostname = \"{example}\"` "
            f"in hardmail.toml (or HARDMAIL_SERVER__HOSTNAME={example}), then run this again.")


def _example_host_name(domain: str) -> str:
    """``mail.DOMAIN`` when that would be a public name, else a placeholder: the example must
    not be a name the same check refuses (mail.example.org is reserved)."""
    candidate = f"mail.{domain.strip().rstrip('.').lower()}"
    return candidate if dnsadvice.host_name_problem(candidate) is None else "mail.your-domain.tld"


def _print_advice(config: Config, domain: str) -> None:
    warning = _host_name_warning(config, domain)
    if warning is not None:
        warn(warning)
    for item in _advice(config, domain):
        console.print(f"; {escape(item.purpose)}", highlight=False)
        console.print(escape(item.zone_line()), highlight=False)


async def _check(config: Config, domain: str) -> int:
    resolver = DnsPythonResolver(config.dns.nameservers, config.dns.port, config.dns.timeout)
    results = await dnsadvice.check(resolver, _advice(config, domain))
    for result in results:
        style = STATUS_STYLE[result.status]
        line = f"[{style}]{result.status:7}[/] {escape(result.advice.rtype):5} {escape(result.advice.name)}"
        console.print(line + (f"  found: {escape(result.found)}" if result.found else ""), highlight=False)
        if result.fix:
            console.print(f"        fix: {escape(result.fix)}", highlight=False)
    return sum(1 for r in results if r.status != "ok")


def _require_hosted(config: Config, domain: str) -> None:
    """Advice is for a domain this server hosts: any other is a typo or a missing `domain add`."""
    name = _domain_keys(config, domain).domain
    hosted = run_async(lambda: with_store(config, lambda store: store.get_domain(name)))
    if hosted is None:
        fail(f"{name} is not a domain of this server; add it with `hardmail domain add {name}`")


@read_only
def dns(words: Annotated[list[str], typer.Argument(help="DOMAIN, or: check DOMAIN", show_default=False)],
        config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Print the DNS records DOMAIN needs (zone-file form); `hardmail dns check DOMAIN` verifies them."""
    if len(words) == 1 and words[0] != "check":
        loaded = load_cli_config(config, data_dir)
        _require_hosted(loaded, words[0])
        _print_advice(loaded, words[0])
        return
    if len(words) != 2 or words[0] != "check":
        raise typer.BadParameter("give DOMAIN, or `check DOMAIN`", param_hint="WORDS")
    loaded = load_cli_config(config, data_dir)
    _require_hosted(loaded, words[1])
    warning = _host_name_warning(loaded, words[1])
    if warning is not None:
        warn(warning)
    problems = run_async(lambda: _check(loaded, words[1]))
    if problems:
        fail(f"{problems} record(s) missing or wrong", "publish the records shown after fix:, then check again")
    if warning is not None:
        fail("the records that name this server (MX, SPF, SRV) cannot be checked",
             "set [server] hostname to this server's public name, then check again")
    console.print("every record is published as advised")


def register(app: typer.Typer) -> None:
    app.add_typer(dkim_app, name="dkim")
    app.command("dns")(dns)
