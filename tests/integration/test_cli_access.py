"""``hardmail range|ban`` and ``hardmail account logins`` through typer's CliRunner, on SQLite."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hardmail.admin import cli_access, cli_accounts
from hardmail.store import open_store
from hardmail.store.ports_credentials import LoginEvent

Cli = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDMAIL_CONFIG", raising=False)
    config = tmp_path / "hardmail.toml"
    config.write_text("[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n")
    app = typer.Typer(no_args_is_help=True)
    cli_accounts.register(app)
    cli_access.register(app)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(app, [*args, "--data-dir", str(tmp_path / "data"), "--config", str(config)], input=stdin)

    return run


def test_range_add_list_test_remove(cli: Cli) -> None:
    added = cli("range", "add", "Office", "10.1.0.0/16", "--priority", "30", "--require-auth", "none")
    assert added.exit_code == 0, added.output
    listed = json.loads(cli("range", "list", "--json").output)
    assert [r["name"] for r in listed][:1] == ["Office"] and any(r["builtin"] for r in listed)
    tested = cli("range", "test", "10.1.2.3")
    assert "range: Office" in tested.output and "deliver external-external: allowed\n" in tested.output
    builtin = cli("range", "test", "203.0.113.1").output
    assert "range: Internet" in builtin and "external-external: allowed (SMTP AUTH required)" in builtin
    assert cli("range", "remove", "Office").exit_code == 0
    missing = cli("range", "remove", "Office")
    assert missing.exit_code == 1 and "hint:" in missing.output


@pytest.mark.parametrize(
    ("args", "problem"),
    [(("range", "add", "x", "10.0.0.9-10.0.0.1"), "above upper bound"),
     (("range", "add", "x", "10.0.0.0/8", "--deliver", "sideways"), "unknown direction"),
     (("range", "add", "x", "10.0.0.0/8", "--allow", "gopher"), "unknown protocol"),
     (("range", "remove", "Internet"), "built-in ranges cannot be removed"),
     (("ban", "add", "not-an-ip"), "not an IP address"),
     (("ban", "add", "192.0.2.1", "--duration", "soon"), "not a duration"),
     (("ban", "export"), "add --nft")],
)
def test_errors_say_what_to_do(cli: Cli, args: tuple[str, ...], problem: str) -> None:
    assert cli("domain", "add", "example.org").exit_code == 0  # a data directory to change things in
    result = cli(*args)
    assert result.exit_code == 1 and problem in result.output


def test_ban_add_list_explain_export_remove(cli: Cli) -> None:
    assert cli("ban", "add", "192.0.2.7", "--duration", "2h", "--reason", "by hand").exit_code == 0
    assert cli("ban", "add", "2001:db8::/64", "--duration", "1d").exit_code == 0
    bans = json.loads(cli("ban", "list", "--json").output)
    assert {b["subject"] for b in bans} == {"192.0.2.7", "2001:db8::/64"}
    assert "active admin ban" in cli("ban", "explain", "192.0.2.7").output
    assert "is not banned" in cli("ban", "explain", "192.0.2.8").output
    assert "2001:db8::/64: active" in cli("ban", "explain", "2001:db8::1").output
    script = cli("ban", "export", "--nft").output
    assert "elements = { 192.0.2.7 timeout 7" in script and "2001:db8::/64 timeout" in script
    assert "ip saddr @banned4 tcp dport" in script
    assert cli("ban", "remove", "192.0.2.7").exit_code == 0
    assert cli("ban", "remove", "192.0.2.7").exit_code == 1


def test_account_logins(cli: Cli, tmp_path: Path) -> None:
    assert cli("domain", "add", "example.test").exit_code == 0
    added = cli("account", "add", "alice@example.test", "--password-stdin", stdin="a long enough passphrase\n")
    assert added.exit_code == 0

    async def record() -> None:
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hardmail.db'}")
        try:
            await store.credentials.append_login_event(LoginEvent(
                at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), account="alice@example.test", kind="login",
                result="failure", protocol="smtp", mechanism="PLAIN", client_ip="192.0.2.7", tls_version="TLSv1.3",
                detail="wrong password"))
            await store.credentials.append_login_event(LoginEvent(
                at=datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC), account="alice@example.test", kind="login",
                result="success", protocol="smtp", mechanism="PLAIN", client_ip="192.0.2.8"))
        finally:
            await store.close()

    asyncio.run(record())
    rows = json.loads(cli("account", "logins", "alice@example.test", "--json").output)
    failure = next(r for r in rows if r["kind"] == "login" and r["result"] == "failure")
    assert (failure["client_ip"], failure["result"], failure["tls_version"]) == ("192.0.2.7", "failure", "TLSv1.3")
    [alice] = json.loads(cli("account", "list", "--json").output)
    assert alice["last_login"] == "2026-01-02T03:05:00+00:00"
    assert "Last login" in cli("account", "list").output
    missing = cli("account", "logins", "nobody@example.test")
    assert missing.exit_code == 1 and "not found" in missing.output
