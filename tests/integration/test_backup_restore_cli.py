"""``hardmail backup verify`` and ``hardmail backup restore`` run as an admin runs them: exit
status, the failures listed, the sidecar's verify record (without file names), the restore
summary, and the errors for what cannot be done, each with what to do instead."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from hardmail.ops.backup.archive import new_identity
from support.backup_archives import BuiltArchive, build_archive, flip_member_byte, make_data_dir, message_entries
from support.cli_process import run_cli


@pytest.fixture
def built(tmp_path: Path) -> BuiltArchive:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    return build_archive(sample.data_dir, tmp_path / "backups")


def _sidecar(built: BuiltArchive) -> dict[str, object]:
    return json.loads((built.path.parent / f"{built.name}.json").read_text())


def test_verify_passes_and_records_it(built: BuiltArchive, tmp_path: Path) -> None:
    done = run_cli("backup", "verify", str(built.path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {built.path.name} verified: {len(built.manifest.files)} files, ")
    assert done.stderr == ""  # no progress bar when standard error is not a terminal
    verify = _sidecar(built)["verify"]
    assert isinstance(verify, dict) and verify["ok"] is True and verify["failures"] == []


def test_verify_lists_the_failures_and_exits_1(built: BuiltArchive, tmp_path: Path) -> None:
    victim = message_entries(built.manifest)[0].path
    flip_member_byte(built.path, victim)
    done = run_cli("backup", "verify", str(built.path), cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"FAILED: {built.path.name} does not verify (1 problems):",
                                        f"  {victim}: SHA-256 differs from the manifest"]
    record = _sidecar(built)
    assert record["verify"]["ok"] is False  # type: ignore[index]
    assert "files/" not in json.dumps(record) and "example.org" not in json.dumps(record)
    as_json = json.loads(run_cli("backup", "verify", "--json", str(built.path), cwd=tmp_path).stdout)
    assert as_json["ok"] is False and as_json["failures"] == [f"{victim}: SHA-256 differs from the manifest"]


def test_an_encrypted_archive_needs_an_identity(tmp_path: Path) -> None:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    secret, public = new_identity()
    built = build_archive(sample.data_dir, tmp_path / "backups", recipients=[public])
    done = run_cli("backup", "verify", str(built.path), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{built.path.name} is encrypted" in done.stderr and "--identity FILE" in done.stderr
    identity = tmp_path / "backup.key"
    identity.write_text(secret + "\n")
    done = run_cli("backup", "restore", str(built.path), "--into", str(tmp_path / "restored"),
                   "--identity", str(identity), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert secret not in done.stdout + done.stderr


def test_restore_prints_a_summary_and_how_to_start(built: BuiltArchive, tmp_path: Path) -> None:
    into = tmp_path / "restored"
    done = run_cli("backup", "restore", str(built.path), "--into", str(into), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"restored {built.name} into {into}: {len(built.manifest.files) - 1} files "
                               "and the database (")
    assert f"{len(message_entries(built.manifest))} messages" in lines[0]
    assert lines[1] == f"  database  SQLite {into}/hardmail.db"
    assert lines[2].startswith("  schema    revision ") and lines[2].endswith(" (current)")
    assert lines[-1] == f"Start it with: hardmail serve --data-dir {into}"


def test_restore_as_json(built: BuiltArchive, tmp_path: Path) -> None:
    into = tmp_path / "restored"
    done = run_cli("backup", "restore", str(built.path), "--into", str(into), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["archive"] == built.name and report["into"] == str(into)
    assert report["schema_from"] == report["schema_to"] and report["start"] == f"hardmail serve --data-dir {into}"


def test_restore_refuses_a_non_empty_directory(built: BuiltArchive, tmp_path: Path) -> None:
    into = tmp_path / "live"
    into.mkdir()
    (into / "hardmail.db").write_text("live data")
    done = run_cli("backup", "restore", str(built.path), "--into", str(into), cwd=tmp_path)
    assert done.returncode == 1
    assert f"error: {into} is not empty" in done.stderr and "--force" in done.stderr
    assert (into / "hardmail.db").read_text() == "live data"


@pytest.mark.parametrize(("args", "error"), [
    ((), "say where to restore"),
    (("--into", "x", "--only", "settings"), "--into and --only cannot be used together"),
    (("--only", "everything"), "is not a part that can be restored"),
    (("--only", "domain"), "--only domain needs the domain"),
    (("--only", "settings", "extra"), "--only settings takes no name"),
    (("--into", "x", "--as-folder", "Restored"), "go with --only"),
])
def test_restore_option_errors(built: BuiltArchive, tmp_path: Path, args: tuple[str, ...], error: str) -> None:
    done = run_cli("backup", "restore", str(built.path), *args, cwd=tmp_path)
    assert done.returncode == 1
    assert error in done.stderr
    assert "hint:" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("hardmail.ops.backup.selective") is not None,
                    reason="selective restore is in this build (its own tests cover it)")
def test_selective_restore_says_when_it_is_not_in_the_build(built: BuiltArchive, tmp_path: Path) -> None:
    for only in (("--only", "mailbox", "alice@example.org"), ("--only", "domain=example.org")):
        done = run_cli("backup", "restore", str(built.path), *only, "--data-dir", str(tmp_path / "data"),
                       cwd=tmp_path)
        assert done.returncode == 1
        assert "selective restore is not available in this build" in done.stderr


def test_a_missing_archive_is_named(tmp_path: Path) -> None:
    done = run_cli("backup", "verify", str(tmp_path / "nothing.tar.zst"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"there is no archive at {tmp_path / 'nothing.tar.zst'}" in done.stderr
