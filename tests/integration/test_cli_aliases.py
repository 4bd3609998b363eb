"""``hardmail alias add`` as a real process: loops and targets that match nothing are refused with a
clear error (exit 1, no traceback), ``--allow-missing`` accepts the latter with a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PASSWORD = "a long enough passphrase"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hardmail(tmp_path: Path) -> Run:
    config = tmp_path / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDMAIL_")}

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hardmail", *args, "--config", str(config)], input=stdin,
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)

    assert run("domain", "add", "example.org").returncode == 0
    assert run("account", "add", "alice@example.org", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    return run


def _refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def test_alias_loops_are_refused(hardmail: Run) -> None:
    assert hardmail("alias", "add", "a@example.org", "b@example.org", "--allow-missing").returncode == 0
    error = _refused(hardmail("alias", "add", "b@example.org", "a@example.org"))
    assert "error: alias b@example.org would make a loop: b@example.org → a@example.org → b@example.org" in error
    assert "hint:" in error
    assert hardmail("alias", "add", "b@example.org", "c@example.org", "--allow-missing").returncode == 0
    error = _refused(hardmail("alias", "add", "c@example.org", "alice@example.org", "a@example.org"))
    assert "c@example.org → a@example.org → b@example.org → c@example.org" in error
    error = _refused(hardmail("alias", "add", "@example.org", "nobody@example.org", "--allow-missing"))
    assert "@example.org → nobody@example.org (= @example.org)" in error
    sources = [alias["source"] for alias in json.loads(hardmail("alias", "list", "--json").stdout)]
    assert sources == ["a@example.org", "b@example.org"]


def test_alias_to_a_local_address_that_does_not_exist(hardmail: Run) -> None:
    error = _refused(hardmail("alias", "add", "team@example.org", "alice@example.org", "bob@example.org"))
    assert "error: alias team@example.org: bob@example.org is not an account or alias here" in error
    assert "hardmail account add bob@example.org" in error and "--allow-missing" in error
    allowed = hardmail("alias", "add", "team@example.org", "alice@example.org", "bob@example.org", "--allow-missing")
    assert allowed.returncode == 0, allowed.stderr
    assert "alias team@example.org → alice@example.org, bob@example.org created" in allowed.stdout
    assert "warning: bob@example.org is not an account or alias yet" in " ".join(allowed.stderr.split())
    remote = hardmail("alias", "add", "out@example.org", "someone@elsewhere.example")
    assert remote.returncode == 0 and remote.stderr == ""


def test_alias_targets_in_one_comma_separated_word_say_to_separate_them(hardmail: Run) -> None:
    error = _refused(hardmail("alias", "add", "team@example.org", "alice@example.org,bob@example.org"))
    assert "invalid target 'alice@example.org,bob@example.org'" in error
    assert "hint: give several targets as separate arguments" in error
