"""``hardmail config check`` and ``config example`` through the command-line runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from hardmail.admin import cli_config

Write = Callable[..., Path]


@pytest.fixture
def run(workdir: Path) -> Callable[..., Result]:
    app = typer.Typer()
    cli_config.register(app)

    @app.callback()
    def root() -> None:
        """Keep ``config`` a sub-command."""

    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, ["config", *args], env=env)

    return invoke


def flat(text: str) -> str:
    """Text without any whitespace: rich wraps long lines wherever it likes."""
    return "".join(text.split())


def test_check_prints_every_setting_and_exits_zero(run: Callable[..., Result], write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipients = 250\n")
    result = run("check", "--config", str(path))
    assert result.exit_code == 0, result.output
    stdout = result.stdout
    assert "max_recipients = 250" in stdout
    assert "[smtp.timeouts]" in stdout and "max_line_length = 1000" in stdout
    assert "warning:" not in result.stderr


def test_check_json(run: Callable[..., Result], tmp_path: Path) -> None:
    result = run("check", "--json", "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["server"]["data_dir"] == str(tmp_path / "d")


def test_check_warns_and_exits_one(run: Callable[..., Result], write_toml: Write) -> None:
    path = write_toml("[relay]\ntrusted_networks = ['0.0.0.0/0']\n")
    result = run("check", "-c", str(path))
    assert result.exit_code == 1
    stderr = flat(result.stderr)
    assert flat("warning: relay.trusted_networks contains 0.0.0.0/0") in stderr
    assert flat("1 warning(s); exit status 1 (pass --warnings-ok to accept them)") in stderr
    assert "max_recipients = 100" in result.stdout  # the settings are still printed


def test_check_warnings_ok_accepts_warnings(run: Callable[..., Result], write_toml: Write) -> None:
    path = write_toml("[relay]\ntrusted_networks = ['0.0.0.0/0']\n")
    result = run("check", "-c", str(path), "--warnings-ok")
    assert result.exit_code == 0
    assert flat("warning: relay.trusted_networks contains 0.0.0.0/0") in flat(result.stderr)


def test_check_neither_needs_nor_creates_the_data_dir(run: Callable[..., Result], tmp_path: Path) -> None:
    result = run("check", "--data-dir", str(tmp_path / "absent"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "absent").exists()


def test_check_lists_every_problem_and_exits_two(run: Callable[..., Result], write_toml: Write) -> None:
    path = write_toml("[smtp]\nmax_recipients = 0\nmax_recipent = 1\n")
    result = run("check", "-c", str(path), env={"HARDMAIL_LOGGING__LEVEL": "loud"})
    assert result.exit_code == 2
    stderr = flat(result.stderr)
    assert flat("smtp.max_recipients: must be greater than 0") in stderr
    assert flat("smtp.max_recipent: unknown setting") in stderr
    assert flat("env HARDMAIL_LOGGING__LEVEL:logging.level") in stderr


def test_check_reports_missing_certificate_files(run: Callable[..., Result], write_toml: Write) -> None:
    path = write_toml("[tls]\ncert_file = 'c.pem'\nkey_file = 'k.pem'\n")
    path.with_name("c.pem").write_text("not checked here")
    result = run("check", "-c", str(path))
    assert result.exit_code == 2
    stderr = flat(result.stderr)
    assert flat("tls.key_file: file") in stderr and "tls.cert_file" not in stderr


def test_missing_config_file_fails(run: Callable[..., Result]) -> None:
    result = run("check", "-c", "absent.toml")
    assert result.exit_code == 2
    assert flat("does not exist") in flat(result.stderr)


def test_example_prints_a_loadable_file(run: Callable[..., Result]) -> None:
    result = run("example")
    assert result.exit_code == 0
    assert result.stdout.startswith("# hardmail configuration")


def test_check_warns_about_a_log_file_others_can_read(
        run: Callable[..., Result], write_toml: Write, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "hardmail.log"
    log_file.parent.mkdir(mode=0o700)
    log_file.write_text("")
    log_file.chmod(0o644)
    path = write_toml(f"[logging]\nfile = '{log_file}'\n")
    result = run("check", "-c", str(path))
    assert "logging.file" in flat(result.stderr) and "mode0644" in flat(result.stderr)
    log_file.chmod(0o600)
    assert "warning:" not in run("check", "-c", str(path)).stderr
