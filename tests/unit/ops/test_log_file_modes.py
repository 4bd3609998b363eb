"""The log file and the directories hardmail creates for it are private whatever the umask."""

from __future__ import annotations

import grp
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

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
