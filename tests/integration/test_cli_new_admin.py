"""What a new admin meets when running ``hardmail`` from the wrong place (issue 11, 16 and 17):
commands that change stored things never create a data directory they could only fail in, a
current directory the user may not search is no crash, and a data directory the user may not
reach is said so with what to do."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_process import run_cli
from support.unprivileged import AS_NOBODY, require_setpriv


@pytest.mark.parametrize("command", [
    ("domain", "remove", "example.org"),
    ("account", "passwd", "a@example.org", "--password-stdin"),
    ("account", "disable", "a@example.org"),
    ("account", "enable", "a@example.org"),
    ("account", "remove", "a@example.org"),
    ("account", "must-change", "a@example.org"),
    ("alias", "remove", "b@example.org"),
    ("ban", "remove", "192.0.2.1"),
    ("range", "remove", "office"),
    ("queue", "retry", "--all"),
    ("queue", "delete", "1"),
    ("dkim", "rotate", "example.org"),
])
def test_commands_that_change_stored_things_refuse_a_missing_data_dir(tmp_path: Path,
                                                                      command: tuple[str, ...]) -> None:
    result = run_cli(*command, cwd=tmp_path, stdin="correct horse battery staple\n" * 2)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: no hardmail data directory at {tmp_path / 'hardmail-data'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def unsearchable_cwd() -> Iterator[Path]:
    """A current directory ``nobody`` may not search (as /root is for ``sudo -u mail``)."""
    require_setpriv("to run the command as an unprivileged user")
    shared = Path(tempfile.mkdtemp(prefix="hardmail-cwd-"))
    try:
        shared.chmod(0o755)
        private = shared / "private"
        private.mkdir(mode=0o700)
        yield private
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize("command", [("domain", "list"), ("config", "check", "--warnings-ok")])
def test_a_current_directory_the_user_cannot_search_is_no_traceback(unsearchable_cwd: Path,
                                                                    command: tuple[str, ...]) -> None:
    data = unsearchable_cwd.parent / "data"
    assert run_cli("domain", "add", "example.org", "-d", str(data), cwd=unsearchable_cwd).returncode == 0
    nobody = pwd.getpwnam("nobody")
    for path in (data, *data.rglob("*")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    result = run_cli(*command, "-d", str(data), cwd=unsearchable_cwd, prefix=AS_NOBODY)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    if command[0] == "domain":
        assert "example.org" in result.stdout


def test_a_data_dir_behind_a_directory_the_user_cannot_search(unsearchable_cwd: Path) -> None:
    data = unsearchable_cwd / "data"
    data.mkdir()
    result = run_cli("domain", "add", "example.org", "-d", str(data), cwd=unsearchable_cwd.parent,
                     prefix=AS_NOBODY)
    assert result.returncode == 1
    assert result.stderr == (f"error: cannot use the data directory {data}: permission denied for user nobody\n"
                             "hint: run as the user that owns it, or let that user search its parent "
                             "directories\n")


@pytest.mark.parametrize("command", [("domain", "list"), ("config", "check")])
def test_config_file_errors_get_the_hint_for_their_cause(tmp_path: Path, command: tuple[str, ...]) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\nhostname = 'x'\n")
    syntax = run_cli(*command, "-c", str(broken), cwd=tmp_path)
    assert syntax.returncode in (1, 2) and "TOML syntax error at line 1" in syntax.stderr
    assert "hint: fix the file at the line and column named above" in syntax.stderr
    assert "fix the setting named above" not in syntax.stderr and "Traceback" not in syntax.stderr
    missing = run_cli(*command, "-c", str(tmp_path / "none.toml"), cwd=tmp_path)
    assert missing.returncode in (1, 2)
    assert missing.stderr.startswith(f"error: {tmp_path / 'none.toml'}: configuration file does not exist")
    assert "hint:" not in missing.stderr  # the error line itself says what to do
