"""Read-only commands work for a user who can only read the database (issue 11, 16): they never
write it, not even to run migrations on a schema that is already current, and an out-of-date
schema is refused with the command that upgrades it.

The database is made by root (a real ``hardmail domain add``), made world-readable and read-only
(0444, in a directory only root can write), and read by ``nobody`` through ``setpriv``; needs root.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_process import run_cli
from support.unprivileged import AS_NOBODY, require_setpriv


@pytest.fixture
def read_only_data() -> Iterator[Path]:
    require_setpriv("to run the CLI as a user who can only read the database")
    top = Path(tempfile.mkdtemp(prefix="hardmail-ro-"))
    top.chmod(0o755)
    data = top / "data"
    try:
        added = run_cli("domain", "add", "example.org", "-d", str(data), cwd=top)
        assert added.returncode == 0, added.stderr
        data.chmod(0o755)  # nobody may enter and read, not write
        (data / "hardmail.db").chmod(0o444)
        yield data
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _digest(data: Path) -> str:
    return hashlib.sha256((data / "hardmail.db").read_bytes()).hexdigest()


@pytest.mark.parametrize("command", [("domain", "list"), ("account", "list"), ("dns", "example.org")])
def test_a_read_only_command_reads_a_database_it_cannot_write(read_only_data: Path,
                                                              command: tuple[str, ...]) -> None:
    before = _digest(read_only_data)
    result = run_cli(*command, "-d", str(read_only_data), cwd=read_only_data.parent, prefix=AS_NOBODY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if command == ("domain", "list"):
        assert "example.org" in result.stdout
    assert _digest(read_only_data) == before
    assert sorted(p.name for p in read_only_data.iterdir()) == ["hardmail.db"]


def test_an_out_of_date_schema_is_refused_with_the_upgrade_command(read_only_data: Path) -> None:
    database = read_only_data / "hardmail.db"
    database.chmod(0o644)
    with sqlite3.connect(database) as connection:  # the schema one revision behind
        connection.execute("UPDATE alembic_version SET version_num = '0007_login_guard'")
    database.chmod(0o444)
    result = run_cli("domain", "list", "-d", str(read_only_data), cwd=read_only_data.parent, prefix=AS_NOBODY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert " ".join(result.stderr.split()) == ("error: the database needs an upgrade: run `hardmail upgrade` "
                                               "as its owner (takes a backup first)")
