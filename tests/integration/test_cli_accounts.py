"""``hardmail domain|account|alias`` through typer's CliRunner, against a real SQLite store.

The commands are registered on a local Typer app so that only this area's module is exercised.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hardmail.admin import cli_accounts
from hardmail.auth.hashing import verify_password
from hardmail.config.schema import PasswordHashSection
from hardmail.store import open_store
from hardmail.store.ports import Account

PASSWORD = "a long enough passphrase"
Cli = Callable[..., Result]


@pytest.fixture
def app() -> typer.Typer:
    local = typer.Typer(no_args_is_help=True)
    cli_accounts.register(local)
    return local


@pytest.fixture
def cli(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run ``hardmail ARGS`` with this test's data directory and a cheap Argon2 setting."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDMAIL_CONFIG", raising=False)
    config = tmp_path / "hardmail.toml"
    config.write_text("[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n")
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Result:
        full = [*args, "--data-dir", str(tmp_path / "data"), "--config", str(config)]
        return runner.invoke(app, full, input=stdin)

    return run


def _account(tmp_path: Path, address: str) -> Account | None:
    async def fetch() -> Account | None:
        store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hardmail.db'}")
        try:
            return await store.get_account(address)
        finally:
            await store.close()

    return asyncio.run(fetch())


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_domain_add_list_remove(cli: Cli) -> None:
    assert "domain example.org added" in _ok(cli("domain", "add", "Example.ORG"))
    _ok(cli("domain", "add", "example.net"))
    listed = json.loads(_ok(cli("domain", "list", "--json")))
    assert [d["name"] for d in listed] == ["example.net", "example.org"]
    assert "example.org" in _ok(cli("domain", "list"))
    assert "domain example.org removed" in _ok(cli("domain", "remove", "example.org"))
    assert [d["name"] for d in json.loads(_ok(cli("domain", "list", "--json")))] == ["example.net"]


def test_empty_lists_say_so(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))  # lists need an initialised data directory
    _ok(cli("domain", "remove", "example.org"))
    assert "no domains" in _ok(cli("domain", "list"))
    assert json.loads(_ok(cli("account", "list", "--json"))) == []


def test_duplicate_domain_fails_with_a_message(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("domain", "add", "example.org")
    assert result.exit_code == 1
    assert "domain example.org already exists" in result.output


def test_account_add_from_stdin_and_list(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("account", "add", "Alice@example.org", "--name", "Alice", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert "account alice@example.org created" in _ok(result)
    assert PASSWORD not in result.output
    account = _account(tmp_path, "alice@example.org")
    assert account is not None and account.display_name == "Alice"
    assert verify_password(account.password_hash, PASSWORD, PasswordHashSection()).ok
    listed = json.loads(_ok(cli("account", "list", "--json")))
    assert listed[0]["address"] == "alice@example.org" and listed[0]["enabled"] is True
    assert "password" not in json.dumps(listed)


def test_account_add_with_prompt_asks_twice(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("account", "add", "bob@example.org", stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert "account bob@example.org created" in _ok(result)
    assert PASSWORD not in result.output
    assert _account(tmp_path, "bob@example.org") is not None


def test_account_in_unknown_domain_fails_with_a_hint(cli: Cli) -> None:
    result = cli("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 1
    assert "domain example.org is not hosted here" in result.output
    assert "hardmail domain add example.org" in result.output


def test_weak_password_is_refused(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("account", "add", "alice@example.org", "--password-stdin", stdin="too-short\n")
    assert result.exit_code == 1
    assert "password refused" in result.output and "too-short" not in result.output
    assert _account(tmp_path, "alice@example.org") is None


def test_empty_stdin_password_is_refused(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("account", "add", "alice@example.org", "--password-stdin", stdin="")
    assert result.exit_code == 1 and "no password on standard input" in result.output


def test_disable_and_enable(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    _ok(cli("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n"))
    assert "account alice@example.org disabled" in _ok(cli("account", "disable", "alice@example.org"))
    account = _account(tmp_path, "alice@example.org")
    assert account is not None and not account.enabled
    assert "enabled" in _ok(cli("account", "enable", "alice@example.org"))
    account = _account(tmp_path, "alice@example.org")
    assert account is not None and account.enabled


def test_passwd_replaces_the_hash(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    _ok(cli("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n"))
    new_password = "an entirely new passphrase"
    result = cli("account", "passwd", "alice@example.org", "--password-stdin",
                 stdin=new_password + "\r\n")
    assert "password of account alice@example.org changed" in _ok(result)
    account = _account(tmp_path, "alice@example.org")
    assert account is not None
    assert verify_password(account.password_hash, new_password, PasswordHashSection()).ok
    assert not verify_password(account.password_hash, PASSWORD, PasswordHashSection()).ok


def test_passwd_of_unknown_account_fails(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("account", "passwd", "nobody@example.org", "--password-stdin",
                 stdin=PASSWORD + "\n")
    assert result.exit_code == 1 and "no account nobody@example.org" in result.output


def test_account_remove(cli: Cli, tmp_path: Path) -> None:
    _ok(cli("domain", "add", "example.org"))
    _ok(cli("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n"))
    assert "account alice@example.org removed" in _ok(cli("account", "remove", "alice@example.org"))
    assert _account(tmp_path, "alice@example.org") is None


def test_alias_add_list_remove_with_catch_all(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    _ok(cli("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n"))
    assert "catch-all @example.org" in _ok(cli("alias", "add", "@example.org", "alice@example.org"))
    result = cli("alias", "add", "team@example.org", "alice@example.org", "bob@example.net")
    assert "alias team@example.org" in _ok(result)
    listed = json.loads(_ok(cli("alias", "list", "--json")))
    assert listed == [
        {"source": "@example.org", "targets": ["alice@example.org"], "catch_all": True,
         "enabled": True},
        {"source": "team@example.org", "targets": ["alice@example.org", "bob@example.net"],
         "catch_all": False, "enabled": True},
    ]
    assert "team@example.org" in _ok(cli("alias", "list", "--domain", "example.org"))
    assert "alias @example.org removed" in _ok(cli("alias", "remove", "@example.org"))
    assert [a["source"] for a in json.loads(_ok(cli("alias", "list", "--json")))] == [
        "team@example.org"
    ]


def test_alias_with_invalid_target_fails(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    result = cli("alias", "add", "team@example.org", "not an address")
    assert result.exit_code == 1 and "invalid target" in result.output


def test_removing_a_domain_in_use_fails(cli: Cli) -> None:
    _ok(cli("domain", "add", "example.org"))
    _ok(cli("alias", "add", "@example.org", "someone@example.net"))
    result = cli("domain", "remove", "example.org")
    assert result.exit_code == 1
    assert "still has 1 alias" in result.output and "alias list --domain" in result.output


def test_usage_error_exits_2(cli: Cli) -> None:
    assert cli("alias", "add", "team@example.org").exit_code == 2  # no target
    assert cli("account", "frobnicate", "x").exit_code == 2


def test_unreachable_database_fails_without_showing_its_password(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "hardmail.toml"
    config.write_text('[storage]\nurl = "postgresql+asyncpg://hm:topsecret@127.0.0.1:1/hm"\n')
    result = CliRunner().invoke(app, ["domain", "list", "--config", str(config)])
    assert result.exit_code == 1
    assert "cannot use the database" in result.output and "127.0.0.1:1" in result.output
    assert "topsecret" not in result.output
