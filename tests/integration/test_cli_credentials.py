"""``hardmail account 2fa|app-password|import-hash|must-change`` and ``account list --legacy``
through typer's CliRunner, against a real SQLite store."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from hardmail.admin import cli_accounts, cli_credentials
from hardmail.auth import totp
from support.dovecot_hashes import dovecot_hashes

PASSWORD = "a long enough passphrase"
ALICE = "alice@example.org"
FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
Cli = Callable[..., Result]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    local = typer.Typer(no_args_is_help=True)
    cli_accounts.register(local)
    cli_credentials.register(local)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARDMAIL_CONFIG", raising=False)
    config = tmp_path / "hardmail.toml"
    config.write_text("[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n[auth.scram]\niterations = 4096\n")
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(local, [*args, "--data-dir", str(tmp_path / "data"), "--config", str(config)],
                             input=stdin)

    assert run("domain", "add", "example.org").exit_code == 0
    assert run("account", "add", ALICE, "--password-stdin", stdin=PASSWORD + "\n").exit_code == 0
    return run


def test_2fa_enable_prints_uri_qr_and_recovery_codes(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totp, "new_totp_secret", lambda: FIXED_SECRET)
    # The code of the current step; one step of drift either way is accepted, so no timing matters.
    code = totp.code_at(FIXED_SECRET, totp.time_step(time.time()))
    result = cli("account", "2fa", "enable", ALICE, stdin=code + "\n")
    assert result.exit_code == 0, result.output
    assert f"otpauth://totp/hardmail:alice%40example.org?secret={FIXED_SECRET}" in result.output
    assert "█" in result.output or "▀" in result.output  # the QR code
    codes = [line.strip() for line in result.output.splitlines() if line.startswith("  ") and line.count("-") == 3]
    assert len(codes) == 10
    again = cli("account", "2fa", "enable", ALICE, stdin=code + "\n")
    assert again.exit_code == 1 and "already on" in again.output
    assert cli("account", "2fa", "verify", ALICE, "--code", codes[0]).exit_code == 0
    assert cli("account", "2fa", "disable", ALICE).exit_code == 0


def test_2fa_enable_with_a_wrong_code_fails(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(totp, "new_totp_secret", lambda: FIXED_SECRET)
    now = totp.time_step(time.time())
    wrong = next(c for c in ("000000", "111111", "222222")
                 if c not in {totp.code_at(FIXED_SECRET, now + d) for d in (-1, 0, 1, 2)})
    result = cli("account", "2fa", "enable", ALICE, stdin=wrong + "\n")
    assert result.exit_code == 1 and "does not match" in result.output
    assert "hint:" in result.output


def test_app_password_add_list_revoke(cli: Cli) -> None:
    added = cli("account", "app-password", "add", ALICE, "phone", "--scope", "smtp", "--scope", "imap",
                "--expires-days", "30")
    assert added.exit_code == 0, added.output
    secret = added.output.splitlines()[1].strip()
    assert len(secret.replace("-", "")) == 32
    listed = cli("account", "app-password", "list", ALICE, "--json")
    [row] = json.loads(listed.output)
    assert (row["name"], row["scopes"]) == ("phone", "imap,smtp") and secret not in listed.output
    bad = cli("account", "app-password", "add", ALICE, "tablet", "--scope", "web")
    assert bad.exit_code == 1 and "unknown scope web" in bad.output
    assert cli("account", "app-password", "revoke", ALICE, "phone").exit_code == 0
    missing = cli("account", "app-password", "revoke", ALICE, "phone")
    assert missing.exit_code == 1 and "app-password list" in missing.output


def test_import_hash_from_stdin_and_list_legacy(cli: Cli) -> None:
    imported = cli("account", "import-hash", ALICE, "--scheme", "hmailserver2",
                   stdin="5f4dcc3b5aa765d61d8327deb882cf99\n")
    assert imported.exit_code == 0, imported.output
    legacy = cli("account", "list", "--legacy")
    assert ALICE in legacy.output and "1 account still on legacy hashes" in legacy.output
    as_json = json.loads(cli("account", "list", "--legacy", "--json").output)
    assert as_json == [{"address": ALICE, "scheme": "hmailserver2"}]
    refused = cli("account", "import-hash", ALICE, "--scheme", "sha999", "--hash", "x")
    assert refused.exit_code == 1 and "unknown scheme" in refused.output


def test_must_change_and_policy_refusal_text(cli: Cli) -> None:
    assert cli("account", "must-change", ALICE).exit_code == 0
    assert cli("account", "must-change", ALICE, "--clear").exit_code == 0
    weak = cli("account", "passwd", ALICE, "--password-stdin", stdin="password1234\n")
    assert weak.exit_code == 1
    assert "most common passwords" in weak.output and "hint:" in weak.output


def _refused_cleanly(result: Result) -> bool:
    """Exit 1 through fail(): the exception typer saw is the SystemExit, never a traceback."""
    return result.exit_code == 1 and isinstance(result.exception, SystemExit) and "Traceback" not in result.output


@pytest.mark.parametrize(
    "password",
    ["purple elephants dance \N{GRINNING FACE} quietly", "purple elephants dance \ue000 quietly",
     "purple elephants \u0627 dance quietly", "line one\x00line two is long"],
    ids=["emoji", "private use", "mixed bidi", "NUL"],
)
def test_every_cli_path_that_sets_a_password_refuses_without_a_traceback(cli: Cli, password: str) -> None:
    added = cli("account", "add", "bob@example.org", "--password-stdin", stdin=password + "\n")
    assert _refused_cleanly(added), added.output
    assert "password refused" in added.output and "hint:" in added.output
    changed = cli("account", "passwd", ALICE, "--password-stdin", stdin=password + "\n")
    assert _refused_cleanly(changed), changed.output
    assert cli("account", "list", "--json").output.count("bob@example.org") == 0


@pytest.mark.parametrize(
    ("scheme", "hash_text"),
    [("bcrypt", "\N{GRINNING FACE}"), ("hmailserver3", "\u00e9" * 70), ("pbkdf2-sha256", "$pbkdf2-sha256$x"),
     ("sha512-crypt", "\x00")],
)
def test_import_hash_refuses_odd_text_without_a_traceback(cli: Cli, scheme: str, hash_text: str) -> None:
    result = cli("account", "import-hash", ALICE, "--scheme", scheme, "--hash", hash_text)
    assert _refused_cleanly(result), result.output
    assert "hash refused" in result.output


def test_import_hash_takes_the_scheme_from_the_dovecot_prefix(cli: Cli) -> None:
    forms = dovecot_hashes("an old dovecot password")
    imported = cli("account", "import-hash", ALICE, "--hash", forms["SSHA512"])
    assert imported.exit_code == 0, imported.output
    assert f"ssha512 hash imported for {ALICE}" in imported.output
    refused = cli("account", "import-hash", ALICE, "--hash", "{NTLM}8846f7eaee8fb117ad06bdd830b7586c")
    assert _refused_cleanly(refused) and "unknown scheme {NTLM}; accepted: {SHA512-CRYPT}" in refused.output
    assert "8846f7" not in refused.output


def test_import_hashes_reports_every_line_and_fails_when_one_failed(cli: Cli, tmp_path: Path) -> None:
    forms = dovecot_hashes("an old dovecot password")
    mixed = tmp_path / "passwd"
    mixed.write_text(f"# dovecot\n{ALICE}:{forms['SHA512']}:1000:1000::/home/alice::\n\n"
                     f"bob:{forms['ARGON2ID']}\nbroken line\n")
    result = cli("account", "import-hashes", str(mixed), "--domain", "example.org")
    assert result.exit_code == 1, result.output
    assert "line 4: skipped: no account bob@example.org (pass --create to create it)" in result.output
    assert "line 5: failed: not a user:hash line" in result.output
    assert "1 imported, 1 skipped, 1 failed" in result.output
    created = cli("account", "import-hashes", "-", "--domain", "example.org", "--create",
                  stdin=f"bob:{forms['ARGON2ID']}\n{ALICE}:{forms['PLAIN-MD5']}\n")
    assert created.exit_code == 0, created.output
    assert "2 imported (1 account created), 0 skipped, 0 failed" in created.output
    legacy = json.loads(cli("account", "list", "--legacy", "--json").output)
    assert legacy == [{"address": ALICE, "scheme": "plain-md5"}, {"address": "bob@example.org", "scheme": "argon2id"}]


def test_import_hashes_shows_a_progress_bar_on_a_terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(cli_credentials, "err_console", Console(file=terminal, force_terminal=True, width=100))
    forms = dovecot_hashes("an old dovecot password")
    result = cli("account", "import-hashes", "-", stdin=f"{ALICE}:{forms['SSHA256']}\n")
    assert result.exit_code == 0, result.output
    assert "importing" in terminal.getvalue() and "1/1" in terminal.getvalue()


@pytest.mark.parametrize("prefix", ["{PLAIN}", "{CLEAR}", "{plain-trim}"])
def test_import_hash_of_a_dovecot_plaintext_says_to_set_it_as_the_password(cli: Cli, prefix: str) -> None:
    result = cli("account", "import-hash", ALICE, "--hash", f"{prefix}not-a-hash-but-the-password")
    assert _refused_cleanly(result), result.output
    text = " ".join(result.output.split())
    assert "holds the password itself, not a hash" in text
    assert f"hint: set it as the password instead: `hardmail account passwd {ALICE} --password-stdin`" in text
    assert "not-a-hash-but-the-password" not in result.output


def test_import_hash_of_an_unsupported_scheme_says_what_to_do(cli: Cli) -> None:
    result = cli("account", "import-hash", ALICE, "--hash", "{CRAM-MD5}e02d374fde0dc75a17a557039a3a5338")
    assert _refused_cleanly(result), result.output
    text = " ".join(result.output.split())
    assert "unknown scheme {CRAM-MD5}" in text and "keep Dovecot's {SCHEME} prefix" not in text
    assert f"set a new password with `hardmail account passwd {ALICE}`" in text
