"""The CLI's shared "disk is full" mapping: every shape a full disk takes on the way up."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from hardmail.admin.cli_common import disk_full_message
from hardmail.core.diskfull import is_disk_full
from hardmail.store.ports import StoreError


def _sqlalchemy_full() -> OperationalError:
    return OperationalError("INSERT INTO domains ...", {}, sqlite3.OperationalError("database or disk is full"))


def _wrapped_in_store_error() -> StoreError:
    try:
        try:
            raise _sqlalchemy_full()
        except OperationalError as inner:
            raise StoreError("cannot use the database") from inner
    except StoreError as outer:
        return outer


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    sqlite3.OperationalError("database or disk is full"),
    _sqlalchemy_full(),
    _wrapped_in_store_error(),
], ids=["ENOSPC", "EDQUOT", "sqlite3", "sqlalchemy", "chained"])
def test_a_full_disk_is_recognised(exc: BaseException) -> None:
    assert is_disk_full(exc)


@pytest.mark.parametrize("exc", [
    OSError(errno.EACCES, "Permission denied"),
    sqlite3.OperationalError("no such table: domains"),
    OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
    ValueError("database"),
], ids=["EACCES", "no-table", "locked", "other"])
def test_other_errors_are_not_a_full_disk(exc: BaseException) -> None:
    assert not is_disk_full(exc)


def test_an_io_error_counts_as_full_only_when_the_disk_has_no_space(tmp_path: Path) -> None:
    io_error = sqlite3.OperationalError("disk I/O error")
    assert not is_disk_full(io_error, tmp_path)  # pytest's tmp_path has room
    assert not is_disk_full(io_error)


def test_the_message_names_the_data_directory() -> None:
    assert disk_full_message(Path("/srv/hardmail-data")) == (
        "the disk holding /srv/hardmail-data is full; free space and retry")
