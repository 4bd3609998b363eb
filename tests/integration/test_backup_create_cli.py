"""``hardmail backup create|list|keygen`` as real processes, as an admin runs them: a backup of a
data directory with mail, while ``hardmail serve`` runs on it too; the configuration file stored;
an encrypted incremental one; the list; the key pair; and the errors (what was wrong, what to do,
one line for a full disk)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.ops.backup.manifest import MANIFEST_MEMBER
from support.cli_process import cli_env, run_cli, serving
from support.small_disk import small_tmpfs
from unit.ops.backup.create_helpers import (
    archive_members,
    assert_consistent,
    build_data_dir,
    database_copy,
    manifest_of,
)

CONFIG = """[server]
data_dir = "{data}"
hostname = "mx.example.org"
[auth.argon2]
time_cost = 1
memory_cost = 8192
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """``tmp_path/hardmail.toml`` and its data directory with accounts, mail and a queued message."""
    async def build() -> None:
        made = await build_data_dir(tmp_path / "data")
        await made.close()

    asyncio.run(build())
    (tmp_path / "hardmail.toml").write_text(CONFIG.format(data=tmp_path / "data"))
    return tmp_path


def hardmail(site: Path, *args: str, config: bool = True) -> subprocess.CompletedProcess[str]:
    extra = ("--config", str(site / "hardmail.toml")) if config else ()
    done: subprocess.CompletedProcess[str] = run_cli("backup", *args, *extra, cwd=site, env=cli_env())
    return done


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def test_a_backup_while_the_server_runs(site: Path) -> None:
    with serving("--config", str(site / "hardmail.toml"), cwd=site):
        done = hardmail(site, "create", "--json", "--no-verify")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    archive = Path(result["archive"])
    assert archive.parent == site / "data" / "backups" and archive.is_file()
    assert result["kind"] == "full" and result["verify"] is None and result["stored_files"] == result["file_count"]
    members = archive_members(archive)
    assert members["config/hardmail.toml"] == (site / "hardmail.toml").read_bytes()
    assert list(members)[-1] == MANIFEST_MEMBER
    assert_consistent(manifest_of(members), database_copy(members, site))
    assert "not encrypted" not in done.stderr  # inside the data directory: no warning
    _no_traceback(done)


def test_an_encrypted_incremental_backup_elsewhere_and_the_list(site: Path) -> None:
    out = site / "offsite"
    first = hardmail(site, "create", "--to", str(out), "--no-verify")
    assert first.returncode == 0, first.stderr
    assert "is not encrypted and is outside the data directory" in first.stderr and "--encrypt-to" in first.stderr
    assert first.stdout.startswith("hardmail-") and ": full, " in first.stdout and "not verified" in first.stdout
    key = site / "backup-identity.txt"
    made = hardmail(site, "keygen", "--out", str(key), config=False)
    assert made.returncode == 0, made.stderr
    recipient = made.stdout.strip()
    assert recipient.startswith("age1") and recipient in key.read_text()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    second = hardmail(site, "create", "--to", str(out), "--incremental", "--encrypt-to", recipient, "--no-verify")
    assert second.returncode == 0, second.stderr
    assert ".tar.zst.age: incremental, " in second.stdout and "not encrypted" not in second.stderr
    listed = hardmail(site, "list", "--dir", str(out), "--json", config=False)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [(r["kind"], r["encrypted"], r["present"]) for r in records] == [("full", False, True),
                                                                             ("incremental", True, True)]
    assert records[1]["parent"] == records[0]["name"] and records[1]["recipients"] == [recipient]
    table = hardmail(site, "list", "--dir", str(out), config=False)
    rows = [line for line in table.stdout.splitlines() if "hardmail-" in line]
    assert table.returncode == 0 and records[1]["name"] in rows[0] and "1 before" in rows[0] and "unverified" in rows[0]


def test_keygen_never_overwrites_an_identity(site: Path) -> None:
    key = site / "id.txt"
    assert hardmail(site, "keygen", "--out", str(key), config=False).returncode == 0
    before = key.read_text()
    again = hardmail(site, "keygen", "--out", str(key), config=False)
    assert again.returncode == 1 and "exists" in again.stderr and "hint:" in again.stderr
    assert key.read_text() == before
    _no_traceback(again)


def test_errors_say_what_is_wrong_and_what_to_do(site: Path) -> None:
    bad_key = hardmail(site, "create", "--encrypt-to", "age1notakey", "--no-verify")
    assert bad_key.returncode == 1 and "is not an age recipient" in bad_key.stderr and "hint:" in bad_key.stderr
    assert "age1notakey" not in bad_key.stdout
    nowhere = run_cli("backup", "create", "--data-dir", str(site / "missing"), cwd=site, env=cli_env())
    assert nowhere.returncode == 1 and "no hardmail data directory" in nowhere.stderr
    assert not (site / "missing").exists()
    empty_list = hardmail(site, "list", "--dir", str(site / "none"), config=False)
    assert empty_list.returncode == 1 and "there is no backup directory" in empty_list.stderr
    assert "hint:" in empty_list.stderr
    for done in (bad_key, nowhere, empty_list):
        _no_traceback(done)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with small_tmpfs("1m", prefix="hardmail-backup-full-") as mount_point:
        yield mount_point


def test_a_full_backup_disk_is_one_line(site: Path, small_disk: Path) -> None:
    with open(small_disk / "filler", "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    done = hardmail(site, "create", "--to", str(small_disk / "backups"), "--no-verify")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert lines == [f"error: the disk holding {small_disk / 'backups'} is full; free space and retry"], done.stderr
    assert not [p for p in (small_disk / "backups").iterdir() if p.name.startswith(("hardmail-", ".hardmail-work"))]
