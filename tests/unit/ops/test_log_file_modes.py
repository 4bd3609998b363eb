"""The log file and the directories hardmail creates for it are private whatever the umask."""

from __future__ import annotations

import grp
import json
import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hardmail.admin import cli_serve
from hardmail.config.schema import Config, LoggingSection
from hardmail.config.warnings import insecure_warnings
from hardmail.ops import log
from hardmail.ops.log import configure_logging, log_event
from hardmail.ops.logfile import LogFileError, loose_modes


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The worst umask: without fchmod, a file would be created 0666."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def own_group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


@pytest.mark.usefixtures("open_umask")
def test_created_file_is_0600_and_created_directories_0700(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "hardmail" / "hardmail.log"
    configure_logging(LoggingSection(file=target))
    log_event("first")
    log.remove_configured_handler()
    assert mode(target) == 0o600
    assert (mode(tmp_path / "logs"), mode(tmp_path / "logs" / "hardmail")) == (0o700, 0o700)
    assert [e["event"] for e in events(target)] == ["first"]  # no warning about our own modes


@pytest.mark.usefixtures("open_umask")
def test_file_created_again_after_logrotate_is_0600(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    configure_logging(LoggingSection(file=target))
    log_event("before.rotate")
    target.rename(tmp_path / "hardmail.log.1")  # logrotate without copytruncate or create
    log_event("after.rotate")
    log.remove_configured_handler()
    assert mode(target) == 0o600
    assert [e["event"] for e in events(target)] == ["after.rotate"]


@pytest.mark.usefixtures("open_umask")
def test_file_group_gives_0640_and_0750_with_the_group(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "hardmail.log"
    configure_logging(LoggingSection(file=target, file_group=own_group()))
    log_event("grouped")
    log.remove_configured_handler()
    assert (mode(target), mode(target.parent)) == (0o640, 0o750)
    assert target.stat().st_gid == target.parent.stat().st_gid == os.getgid()


def test_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogFileError, match="no group named 'no-such-group-hm'"):
        configure_logging(LoggingSection(file=tmp_path / "hardmail.log", file_group="no-such-group-hm"))


def test_existing_loose_file_and_directory_are_warned_about(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    target = directory / "hardmail.log"
    target.write_text("")
    target.chmod(0o644)
    config = Config.model_validate({"logging": {"file": str(target)}})
    found = insecure_warnings(config)
    assert len(found) == 2
    assert "mode 0644" in found[0] and "chmod 600" in found[0]
    assert "mode 0777" in found[1]
    assert mode(target) == 0o644  # an existing file keeps the mode its owner gave it
    configure_logging(config.logging)  # at start, the log itself says so too
    log_event("started")
    log.remove_configured_handler()
    written = events(target)
    assert [e["event"] for e in written] == ["started", "log.file_mode", "log.file_mode"]
    assert written[1]["level"] == "warning"
    assert "mode 0777" in str(written[1]["detail"])
    assert "had mode 0644" in str(written[2]["detail"]) and "set it to 0600" in str(written[2]["detail"])
    assert mode(target) == 0o600  # narrowed when hardmail opened it: the log is private


def test_group_readable_file_is_fine_with_a_file_group(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    target.write_text("")
    target.chmod(0o640)
    tmp_path.chmod(0o750)
    assert loose_modes(target, own_group()) == []
    assert len(loose_modes(target)) == 1


def test_file_logrotate_created_loosely_is_reported_in_the_log(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    configure_logging(LoggingSection(file=target))
    log_event("before.rotate")
    target.rename(tmp_path / "hardmail.log.1")
    target.write_text("")
    target.chmod(0o644)  # logrotate's "create 0644"
    log_event("after.rotate")
    log.remove_configured_handler()
    assert [e["event"] for e in events(target)] == ["after.rotate", "log.file_mode"]
    assert mode(target) == 0o600


# --- what an attacker who can write to the log's directory may have put at the path -------------


def test_a_symbolic_link_at_the_log_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "hardmail.log"
    target.symlink_to(victim)
    with pytest.raises(LogFileError, match="symbolic link"):
        configure_logging(LoggingSection(file=target))
    log_event("after.refusal")
    log.remove_configured_handler()
    assert victim.read_text() == "precious\n"


def test_another_users_file_at_the_log_path_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    target = tmp_path / "hardmail.log"
    target.write_text("")
    os.chown(target, 65534, 65534)  # planted by another user, who could then read every line
    with pytest.raises(LogFileError, match="owned by another user"):
        configure_logging(LoggingSection(file=target))
    assert target.read_text() == ""


def test_a_hard_link_at_the_log_path_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "hardmail.log"
    os.link(victim, target)
    with pytest.raises(LogFileError, match="hard link"):
        configure_logging(LoggingSection(file=target))
    assert victim.read_text() == "precious\n"


def test_a_fifo_at_the_log_path_is_refused_without_blocking(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    os.mkfifo(target)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("opening the FIFO blocked"))
    signal.alarm(10)
    try:
        with pytest.raises(LogFileError, match="FIFO"):
            configure_logging(LoggingSection(file=target))
    finally:
        signal.alarm(0)


def test_a_symbolic_link_planted_after_a_rotation_is_not_followed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "hardmail.log"
    rotated = tmp_path / "hardmail.log.1"
    configure_logging(LoggingSection(file=target))
    log_event("before.rotate")
    target.rename(rotated)
    target.symlink_to(victim)  # planted between the rotation and hardmail's next write
    log_event("after.rotate")
    log_event("later")
    target.unlink()  # the admin removes it: the next line creates a file of hardmail's own again
    log_event("fixed")
    log.remove_configured_handler()
    assert victim.read_text() == "precious\n"
    kept = events(rotated)
    assert [e["event"] for e in kept] == ["before.rotate", "after.rotate", "log.file_mode", "later"]
    assert "symbolic link" in str(kept[2]["detail"])
    assert [e["event"] for e in events(target)] == ["fixed"]
    assert mode(target) == 0o600
    assert capsys.readouterr().err.count("is a symbolic link") == 1  # also where the admin sees it at once


def test_a_directory_of_another_user_is_warned_about(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another user needs root")
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o755)
    os.chown(directory, 65534, 65534)
    assert any("belongs to another user" in found for found in loose_modes(directory / "hardmail.log"))


def test_serve_stops_with_one_line_naming_the_planted_link(tmp_path: Path) -> None:
    app = typer.Typer()
    cli_serve.register(app)

    @app.callback()
    def root() -> None:
        """Keep ``serve`` a sub-command."""

    target = tmp_path / "hardmail.log"
    target.symlink_to(tmp_path / "victim")
    env = {"HARDMAIL_LOGGING__FILE": str(target), "HARDMAIL_SERVER__WORKERS": "1"}
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path / "data"), "--listen-smtp", "127.0.0.1:0",
                                      "--listen-submission", "127.0.0.1:0", "--listen-submissions", "127.0.0.1:0"],
                                env=env)
    log.remove_configured_handler()
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "symbolic link" in text and "another program" not in text
    assert not (tmp_path / "victim").exists()


@pytest.mark.usefixtures("open_umask")
def test_a_world_writable_log_of_an_older_version_is_made_private_on_upgrade(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    target.write_text('{"event": "old line"}\n')
    target.chmod(0o666)  # what the old code made under umask 000
    configure_logging(LoggingSection(file=target))
    log_event("upgraded")
    log.remove_configured_handler()
    assert mode(target) == 0o600
    assert [e["event"] for e in events(target)] == ["old line", "upgraded", "log.file_mode"]


def test_with_a_file_group_an_existing_file_gets_the_group_and_0640(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    target.write_text("")
    target.chmod(0o664)
    configure_logging(LoggingSection(file=target, file_group=own_group()))
    log_event("grouped")
    log.remove_configured_handler()
    assert mode(target) == 0o640


def test_config_check_names_a_planted_link_before_serve_refuses_it(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    target.symlink_to(tmp_path / "victim")
    config = Config.model_validate({"logging": {"file": str(target)}})
    found = insecure_warnings(config)
    assert len(found) == 1 and "is a symbolic link" in found[0]
