"""The data directory as an admin meets it, through the real ``hardmail`` command (issue 11, 16 and 18):
resolved once and absolute, created (and said so) by commands that write, refused by read-only
commands when missing or empty (never an empty database), one server per data directory, and
``hardmail status`` / ``--version``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from importlib.metadata import version
from pathlib import Path

import pytest

from hardmail.server.listener import KINDS
from hardmail.store.sql.migrate import head_revision
from support.cli_process import EPHEMERAL_LISTENERS, cli_env, run_cli, serving
from support.unprivileged import AS_NOBODY, require_setpriv

CHEAP_ARGON2 = "[auth.argon2]\ntime_cost = 1\nmemory_cost = 8192\n"
ONE_WORKER = {"HARDMAIL_SERVER__WORKERS": "1"}


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    """An empty current directory: the default data directory is ./hardmail-data in it."""
    where = tmp_path / "cwd"
    where.mkdir()
    return where


def _no_data_dir_error(path: Path) -> str:
    return (f"error: no hardmail data directory at {path}; pass --data-dir or set HARDMAIL_DATA_DIR, "
            "or run `hardmail serve` first")


@pytest.mark.parametrize("command", [("domain", "list"), ("account", "list"), ("queue", "list"),
                                     ("dkim", "show", "example.org")])
def test_read_only_commands_refuse_a_missing_data_dir_and_create_nothing(cwd: Path, command: tuple[str, ...]) -> None:
    result = run_cli(*command, cwd=cwd)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == _no_data_dir_error(cwd / "hardmail-data")
    assert list(cwd.iterdir()) == []


def test_a_data_dir_without_a_database_is_not_initialised(cwd: Path) -> None:
    data = cwd / "data"
    data.mkdir()
    result = run_cli("domain", "list", "-d", str(data), cwd=cwd)
    assert result.returncode == 1
    assert f"the data directory {data} is not initialised (no database hardmail.db in it)" in result.stderr
    assert list(data.iterdir()) == []


def test_a_writing_command_creates_the_data_dir_once_and_says_where(cwd: Path) -> None:
    first = run_cli("domain", "add", "example.org", cwd=cwd)
    assert first.returncode == 0, first.stderr
    assert first.stderr == f"created data directory {cwd / 'hardmail-data'}\n"
    assert (cwd / "hardmail-data" / "hardmail.db").is_file()
    assert (cwd / "hardmail-data").stat().st_mode & 0o777 == 0o700
    second = run_cli("domain", "add", "example.net", cwd=cwd)
    assert second.returncode == 0 and second.stderr == ""
    listed = run_cli("domain", "list", "--json", cwd=cwd)
    assert [d["name"] for d in json.loads(listed.stdout)] == ["example.net", "example.org"]


def test_relative_data_dir_is_resolved_once_to_an_absolute_path(cwd: Path) -> None:
    (cwd / "sub").mkdir()
    result = run_cli("domain", "add", "example.org", "-d", "sub/../data", cwd=cwd)
    assert result.stderr == f"created data directory {cwd / 'data'}\n"


def test_data_dir_order_option_then_file_then_environment_then_default(cwd: Path, tmp_path: Path) -> None:
    env_dir, file_dir, option_dir = tmp_path / "from-env", tmp_path / "from-file", tmp_path / "from-option"
    env = cli_env(HARDMAIL_DATA_DIR=str(env_dir))
    assert run_cli("domain", "add", "env.example", cwd=cwd, env=env).returncode == 0
    assert (env_dir / "hardmail.db").is_file() and not (cwd / "hardmail-data").exists()
    config = tmp_path / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{file_dir}"\n')
    assert run_cli("domain", "add", "file.example", "-c", str(config), cwd=cwd, env=env).returncode == 0
    assert (file_dir / "hardmail.db").is_file()
    result = run_cli("domain", "add", "option.example", "-c", str(config), "-d", str(option_dir), cwd=cwd, env=env)
    assert result.stderr == f"created data directory {option_dir}\n"
    listed = run_cli("domain", "list", "--json", "-c", str(config), cwd=cwd, env=env)
    assert [d["name"] for d in json.loads(listed.stdout)] == ["file.example"]


def test_version(cwd: Path) -> None:
    result = run_cli("--version", cwd=cwd)
    assert result.returncode == 0
    assert result.stdout == (f"hardmail {version('hardmail')}\n"
                             f"schema revision {head_revision()} (the newest this version writes)\n")


def test_status_without_a_data_dir_or_a_server_exits_3(cwd: Path) -> None:
    missing = run_cli("status", cwd=cwd)
    assert missing.returncode == 3
    assert missing.stderr.strip() == _no_data_dir_error(cwd / "hardmail-data")
    assert run_cli("domain", "add", "example.org", cwd=cwd).returncode == 0
    stopped = run_cli("status", cwd=cwd)
    assert stopped.returncode == 3
    assert stopped.stdout == f"no server is running on {cwd / 'hardmail-data'}\n"
    as_json = run_cli("status", "--json", cwd=cwd)
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout) == {"running": False, "data_dir": str(cwd / "hardmail-data")}
    assert list(cwd.iterdir()) == [cwd / "hardmail-data"]


def test_serve_creates_the_data_dir_and_status_describes_the_running_server(cwd: Path) -> None:
    data = cwd / "hardmail-data"
    with serving(cwd=cwd, env=cli_env(**ONE_WORKER)) as server:
        status = run_cli("status", "--json", cwd=cwd)
        text = run_cli("status", cwd=cwd)
        os.kill(server.pid, signal.SIGTERM)
    assert server.stderr.startswith(f"created data directory {data}\n")
    assert status.returncode == 0, status.stderr
    found = json.loads(status.stdout)
    assert (found["running"], found["pid"], found["workers"], found["data_dir"]) == (True, server.pid, 1, str(data))
    announced = {line.split()[0]: line.split()[1] for line in server.started
                 if line.split()[:1] and line.split()[0] in KINDS and "not served" not in line}
    assert {item["kind"]: item["address"] for item in found["listeners"]} == announced
    assert (found["queue_size"], found["sessions"], found["last_errors"]) == (0, 0, [])
    assert found["started"].endswith("Z") and [p["pid"] for p in found["processes"]] == [server.pid]
    assert text.returncode == 0
    assert f"hardmail is running on {data} (pid {server.pid}, since {found['started']})" in text.stdout
    assert f"smtp         {announced['smtp']}" in text.stdout and "queue        0 message(s)" in text.stdout
    after = run_cli("status", cwd=cwd)
    assert after.returncode == 3 and "no server is running" in after.stdout
    assert not list((data / "run").iterdir())  # a clean stop removes its status file


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_the_same_data_dir_is_refused(cwd: Path, workers: str) -> None:
    env = cli_env(HARDMAIL_SERVER__WORKERS=workers)
    with serving(cwd=cwd, env=env) as first:
        holder = json.loads((cwd / "hardmail-data" / "hardmail.lock").read_text())
        second = run_cli("serve", *EPHEMERAL_LISTENERS, cwd=cwd, env=env)
        status = json.loads(run_cli("status", "--json", cwd=cwd).stdout)
    assert second.returncode == 1
    assert second.stderr == (f"error: another hardmail server (pid {first.pid}, started {holder['started']}) "
                             f"is using {cwd / 'hardmail-data'}\n"
                             "hint: stop that server first (`hardmail status` shows it), or give this one "
                             "another --data-dir\n")
    assert "Traceback" not in second.stderr and second.stdout == ""
    assert status["pid"] == first.pid and status["workers"] == int(workers)
    announcing = status["processes"][0]  # the process that printed the start (a worker, with 2)
    assert announcing["worker"] == 0 and (announcing["pid"] == first.pid) == (workers == "1")
    # the lock went with the first server: a new one starts
    with serving(cwd=cwd, env=cli_env(**ONE_WORKER)) as third:
        assert json.loads(run_cli("status", "--json", cwd=cwd).stdout)["pid"] == third.pid


def test_status_and_lists_as_a_user_who_cannot_read_the_data_dir() -> None:
    require_setpriv("to run status as an unprivileged user")
    shared = Path(tempfile.mkdtemp(prefix="hardmail-status-"))
    try:
        shared.chmod(0o755)
        data = shared / "data"
        assert run_cli("domain", "add", "example.org", "-d", str(data), cwd=shared).returncode == 0
        with serving("-d", str(data), cwd=shared, env=cli_env(**ONE_WORKER)):
            result = run_cli("status", "-d", str(data), cwd=shared,
                             prefix=AS_NOBODY)
        assert result.returncode == 4, result.stdout + result.stderr
        assert result.stderr.startswith(f"error: cannot read {data / 'hardmail.lock'}: permission denied for user "
                                        "nobody")
        assert "Traceback" not in result.stderr
        listed = run_cli("domain", "list", "-d", str(data), cwd=shared,
                         prefix=AS_NOBODY)
        assert listed.returncode == 1
        assert listed.stderr == f"error: data directory {data} is not readable by user nobody\n"
    finally:
        shutil.rmtree(shared, ignore_errors=True)
