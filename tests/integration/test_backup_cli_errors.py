"""The backup commands on what goes wrong, run as an admin runs them: a damaged or crafted
archive, a bad identity or recipient file, an age secret key given where a recipient belongs (never
echoed), a verify with the wrong identity (never recorded as damage), a list of a directory whose
archives lost their records, were cut short or lost a chain member, an interrupted encrypted
backup (no plaintext left behind), and the selective restore of the live configuration file.
Each error is one ``error:`` line and a hint, exit 1, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hardmail.ops.backup.archive import new_identity
from hardmail.ops.backup.manifest import MANIFEST_MEMBER
from support.backup_archives import BuiltArchive, build_archive, make_data_dir, rewrite_archive, truncate_file
from support.backup_damage import damaged_copy
from support.cli_process import cli_env, hardmail_command, run_cli

CONFIG = """[server]
data_dir = "{data}"
hostname = "mail.example.org"
[auth.argon2]
time_cost = 1
memory_cost = 8192
"""


@pytest.fixture
def built(tmp_path: Path) -> BuiltArchive:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    return build_archive(sample.data_dir, tmp_path / "backups")


def _one_error(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "error:" in done.stderr and "hint:" in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


# --- 4, 5: damaged and crafted archives ------------------------------------------------------

@pytest.mark.parametrize(("damage", "only"), [("truncated archive", ("--only", "mailbox", "alice@example.org")),
                                              ("flipped byte in the compressed stream", ("--only", "settings"))])
def test_a_selective_restore_of_a_damaged_archive_is_an_error(built: BuiltArchive, tmp_path: Path, damage: str,
                                                              only: tuple[str, ...]) -> None:
    copy, _ = damaged_copy(built.path, tmp_path / "damaged", damage)
    done = run_cli("backup", "restore", str(copy), *only, "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    _one_error(done)


@pytest.mark.parametrize("manifest", [b"[1, 2, 3]", b'"a string"'])
def test_a_manifest_that_is_not_an_object_is_an_error(built: BuiltArchive, tmp_path: Path, manifest: bytes) -> None:
    rewrite_archive(built.path, lambda name, data: manifest if name == MANIFEST_MEMBER else data)
    verify = run_cli("backup", "verify", str(built.path), cwd=tmp_path)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert "the manifest is damaged" in verify.stdout
    _one_error(run_cli("backup", "restore", str(built.path), "--into", str(tmp_path / "r"), cwd=tmp_path))
    _one_error(run_cli("backup", "restore", str(built.path), "--only", "settings", "--data-dir",
                       str(tmp_path / "data"), cwd=tmp_path))


def test_manifest_notes_that_are_not_an_object_are_an_error(built: BuiltArchive, tmp_path: Path) -> None:
    def bad_notes(name: str, data: bytes) -> bytes:
        if name != MANIFEST_MEMBER:
            return data
        value = json.loads(data)
        value["notes"] = [1, 2]
        return json.dumps(value).encode()

    rewrite_archive(built.path, bad_notes)
    verify = run_cli("backup", "verify", str(built.path), cwd=tmp_path)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr and "notes" in verify.stdout
    _one_error(run_cli("backup", "restore", str(built.path), "--into", str(tmp_path / "r"), cwd=tmp_path))


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[BuiltArchive, str]:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    secret, public = new_identity()
    return build_archive(sample.data_dir, tmp_path / "backups", recipients=[public]), secret


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x81binary", b"# only a comment\nhello\n"])
def test_an_identity_file_that_is_not_one_is_an_error(encrypted: tuple[BuiltArchive, str], tmp_path: Path,
                                                      content: bytes) -> None:
    archive, _ = encrypted
    identity = tmp_path / "not-an-identity"
    identity.write_bytes(content)
    for args in (("verify", str(archive.path)), ("restore", str(archive.path), "--into", str(tmp_path / "r"))):
        _one_error(run_cli("backup", *args, "--identity", str(identity), cwd=tmp_path),
                   "is not an age identity file")


# --- 7: the wrong identity is not damage -----------------------------------------------------

def test_verify_with_the_wrong_identity_leaves_the_record_alone(encrypted: tuple[BuiltArchive, str],
                                                                tmp_path: Path) -> None:
    archive, _ = encrypted
    other = tmp_path / "other.key"
    other.write_text(new_identity()[0] + "\n")
    sidecar = archive.path.parent / f"{archive.name}.json"
    before = sidecar.read_bytes()
    _one_error(run_cli("backup", "verify", str(archive.path), "--identity", str(other), cwd=tmp_path),
               "none of the given identities can decrypt it", "--identity")
    assert sidecar.read_bytes() == before
    listed = json.loads(run_cli("backup", "list", "--dir", str(archive.path.parent), "--json", cwd=tmp_path).stdout)
    assert [entry["status"] for entry in listed] == ["unverified"]


# --- 6, 16(h): a secret key given as a recipient ---------------------------------------------

@pytest.fixture
def site(tmp_path: Path) -> Path:
    asyncio.run(make_data_dir(tmp_path / "data"))
    (tmp_path / "hardmail.toml").write_text(CONFIG.format(data=tmp_path / "data"))
    return tmp_path


def _secret_nowhere(secret: str, site: Path, *outputs: str) -> None:
    body = secret.removeprefix("AGE-SECRET-KEY-1")
    for where in [*outputs, *(p.read_text(errors="replace") for p in (site / "data").rglob("*.json"))]:
        assert body[:6] not in where and body[-6:] not in where


def test_a_secret_key_given_as_a_recipient_is_refused_without_showing_it(site: Path) -> None:
    secret, _ = new_identity()
    as_file = site / "recipients.txt"
    as_file.write_text(f"# oops\n{secret}\n")
    for given in (secret, str(as_file)):
        done = run_cli("backup", "create", "--config", str(site / "hardmail.toml"), "--encrypt-to", given,
                       cwd=site)
        _one_error(done, "that is an age identity (a secret key), not a recipient", "hardmail backup keygen")
        _secret_nowhere(secret, site, done.stdout, done.stderr)
    health = site / "data" / "backup-state" / "health.json"
    assert not health.exists()  # a usage error is not a failed backup (16 h)


def test_a_secret_key_in_the_configured_recipients_is_not_shown(site: Path) -> None:
    secret, _ = new_identity()
    config = site / "hardmail.toml"
    config.write_text(config.read_text() + f'[backup]\nrecipients = ["{secret}"]\n')
    done = run_cli("backup", "create", "--config", str(config), cwd=site)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "that is an age identity (a secret key), not a recipient" in done.stderr
    _secret_nowhere(secret, site, done.stdout, done.stderr)


def test_a_bad_recipient_is_refused_before_the_backup(site: Path) -> None:
    done = run_cli("backup", "create", "--config", str(site / "hardmail.toml"), "--encrypt-to",
                   str(site / "no-such-file"), cwd=site)
    _one_error(done, "does not exist")
    assert not (site / "data" / "backup-state" / "health.json").exists()
    assert not (site / "data" / "backups").exists() or not list((site / "data" / "backups").glob("hardmail-*"))


def test_a_destination_that_is_a_file_says_it_is_not_a_directory(site: Path) -> None:
    target = site / "a-file"
    target.write_text("x")
    config = site / "hardmail.toml"
    config.write_text(config.read_text() + f'[backup]\ndestination = "{target}"\n')
    _one_error(run_cli("backup", "create", "--config", str(config), cwd=site), "is not a directory")
    _one_error(run_cli("backup", "create", "--config", str(config), "--to", str(target / "sub"), cwd=site),
               "is not a directory")
    assert target.read_text() == "x"


# --- 12: the list tells what is wrong --------------------------------------------------------

def _listed(directory: Path, cwd: Path) -> dict[str, dict[str, object]]:
    done = run_cli("backup", "list", "--dir", str(directory), "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return {entry["name"]: entry for entry in json.loads(done.stdout)}


def test_the_list_shows_archives_without_a_record_and_damage(tmp_path: Path) -> None:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    backups = tmp_path / "backups"
    full = build_archive(sample.data_dir, backups)
    incr = build_archive(sample.data_dir, backups, parent=full)
    second = build_archive(sample.data_dir, backups)
    third = build_archive(sample.data_dir, backups)
    (backups / f"{second.name}.json").unlink()
    (backups / f"{third.name}.json").write_text("{not json")
    copied = tmp_path / "copied"
    copied.mkdir()
    shutil.copy2(full.path, copied / full.path.name)  # archives copied without their records
    listed = _listed(backups, tmp_path)
    assert listed[second.name]["status"] == "no record" and listed[second.name]["size"] == second.path.stat().st_size
    assert listed[third.name]["status"] == "no record"
    assert listed[full.name]["status"] == listed[incr.name]["status"] == "unverified"
    assert [entry["status"] for entry in _listed(copied, tmp_path).values()] == ["no record"]
    truncate_file(incr.path, keep=0.5)
    assert _listed(backups, tmp_path)[incr.name]["status"] == "damaged (size)"
    full.path.unlink()
    (backups / f"{incr.name}.tar.zst").unlink()
    listed = _listed(backups, tmp_path)
    assert listed[full.name]["status"] == "missing"
    table = run_cli("backup", "list", "--dir", str(backups), cwd=tmp_path)
    assert table.returncode == 0 and "no record" in table.stdout and "missing" in table.stdout


def test_the_list_says_when_a_chain_is_broken(tmp_path: Path) -> None:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    backups = tmp_path / "backups"
    full = build_archive(sample.data_dir, backups)
    incr = build_archive(sample.data_dir, backups, parent=full)
    full.path.unlink()
    (backups / f"{full.name}.json").unlink()
    assert _listed(backups, tmp_path)[incr.name]["status"] == f"chain broken: {full.name} missing"
    table = run_cli("backup", "list", "--dir", str(backups), cwd=tmp_path)
    assert "chain broken" in table.stdout


def test_listing_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    _one_error(run_cli("backup", "list", "--dir", str(tmp_path / "nowhere"), cwd=tmp_path),
               "there is no backup directory")


# --- 8: an interrupted encrypted backup leaves no plaintext ----------------------------------

def _wait_for(found: Callable[[], bool], process: subprocess.Popen[str], deadline: float = 120) -> None:
    end = time.monotonic() + deadline
    while not found():  # polled: the file appears while the backup writes it
        assert process.poll() is None, "the backup ended before it could be interrupted"
        assert time.monotonic() < end, "the plaintext never appeared"
        time.sleep(0.001)


def _plaintext_in_work(out: Path) -> bool:
    """The phase marker: the plaintext archive being written, inside the backup's work directory."""
    return bool(list(out.glob(".hardmail-work-*/hardmail-*.tar.zst"))) if out.is_dir() else False


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_encrypted_backup_leaves_no_plaintext(site: Path, number: signal.Signals) -> None:
    big = site / "data" / "attachments.bin"
    big.write_bytes(os.urandom(64 * 1024 * 1024))  # long enough to be interrupted while it is read
    out = site / "offsite"
    _, public = new_identity()
    process = subprocess.Popen(hardmail_command("backup", "create", "--config", str(site / "hardmail.toml"),
                                                "--to", str(out), "--encrypt-to", public, "--no-verify"),
                               cwd=site, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _plaintext_in_work(out), process)
        process.send_signal(number)
        _stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert [p.name for p in out.iterdir() if not p.name.startswith(".hardmail-backup.lock")] == []
    assert "no backups" in run_cli("backup", "list", "--dir", str(out), cwd=site).stdout


# --- 13, 15: restore hints and the live configuration file -----------------------------------

def test_restoring_into_the_directory_holding_the_archive_says_to_copy_it_out(built: BuiltArchive,
                                                                                tmp_path: Path) -> None:
    _one_error(run_cli("backup", "restore", str(built.path), "--into", str(tmp_path), "--force", cwd=tmp_path),
               "is inside", "copy the archive")


def test_only_settings_writes_the_archived_config_next_to_the_live_one(tmp_path: Path) -> None:
    sample = asyncio.run(make_data_dir(tmp_path / "data"))
    etc = tmp_path / "etc"
    etc.mkdir()
    live = etc / "live.toml"
    live.write_text(CONFIG.format(data=sample.data_dir))
    archive = build_archive(sample.data_dir, tmp_path / "backups", config_file=live)
    done = run_cli("backup", "restore", str(archive.path), "--only", "settings", "--config", str(live), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (etc / "live.toml.restored").is_file()
    assert not (sample.data_dir / "live.toml.restored").exists()
