"""A full restore against crafted archives and careless use (review of issue 13): database member
names that leave the restore directory are refused before anything is moved; the restore holds the
target's data-directory lock for its whole run (a server cannot start meanwhile, and a running
server makes it refuse); a failed ``--force`` restore puts the old contents back; restored modes
are the server's only (no setuid, no group/other bits); a member that the manifest does not list,
or more bytes than the archive's record says it stores, is an error before those bytes are
written; and an archive of a newer schema is refused naming the hardmail that wrote its database."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup import restore_config
from hardmail.ops.backup.manifest import MANIFEST_MEMBER, DatabaseInfo, FileEntry, Manifest
from hardmail.ops.backup.restore import RestoreError, restore_full
from hardmail.ops.runstate import lock_holder
from hardmail.store.sql.migrate import WRITTEN_BY_KEY, hardmail_version
from support.backup_archives import (
    BuiltArchive,
    SampleData,
    add_member,
    build_archive,
    make_data_dir,
    rewrite_archive,
    truncate_file,
)
from support.cli_process import EPHEMERAL_LISTENERS, cli_env, run_cli, serving


@pytest.fixture
async def sample(tmp_path: Path) -> SampleData:
    return await make_data_dir(tmp_path / "data", messages=2)


def _build(sample: SampleData, tmp_path: Path) -> BuiltArchive:
    return build_archive(sample.data_dir, tmp_path / "backups")


def _change_manifest(archive: Path, change: Callable[[Manifest], Manifest]) -> None:
    rewrite_archive(archive, lambda name, data: change(Manifest.from_json(data)).to_json()
                    if name == MANIFEST_MEMBER else data)


def _with_entry(manifest: Manifest, path: str, change: Callable[[FileEntry], FileEntry]) -> Manifest:
    return replace(manifest, files=tuple(change(e) if e.path == path else e for e in manifest.files))


# --- 1: database member names ----------------------------------------------------------------

@pytest.mark.parametrize("field", ["member", "dump_member"])
async def test_a_database_member_outside_the_restore_directory_is_refused(sample: SampleData, tmp_path: Path,
                                                                          field: str) -> None:
    built = _build(sample, tmp_path)
    victim_dir = tmp_path / "V"
    victim_dir.mkdir()
    (victim_dir / "hardmail.db").write_bytes(b"someone else's database")
    into = tmp_path / "X"
    escape = os.path.relpath(victim_dir / "hardmail.db", into / ".hardmail-restore-database")

    def crafted(manifest: Manifest) -> Manifest:
        database = manifest.database
        if field == "member":
            return replace(manifest, database=replace(database, member=f"database/{escape}"))
        return replace(manifest, database=DatabaseInfo("postgresql", "database/tables", f"database/{escape}"))

    _change_manifest(built.path, crafted)
    with pytest.raises(RestoreError, match="unsafe path"):
        await restore_full(built.path, into)
    assert (victim_dir / "hardmail.db").read_bytes() == b"someone else's database"


async def test_a_database_member_outside_database_is_refused(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    _change_manifest(built.path, lambda m: replace(m, database=replace(m.database, member="files/server.key")))
    with pytest.raises(RestoreError, match="outside database/"):
        await restore_full(built.path, tmp_path / "X")


# --- 2: the data directory's lock ------------------------------------------------------------

async def test_a_server_cannot_start_on_a_directory_being_restored(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    into = tmp_path / "race"
    seen: dict[str, object] = {}

    def during(phase: str, done: int, total: int) -> None:
        if seen:
            return
        seen["holder"] = lock_holder(into)
        seen["serve"] = run_cli("serve", *EPHEMERAL_LISTENERS, "--data-dir", str(into), cwd=tmp_path, env=cli_env())

    await restore_full(built.path, into, progress=during)
    holder = seen["holder"]
    assert isinstance(holder, dict) and holder["pid"] == os.getpid() and holder["command"] == "restore"
    assert holder["archive"] == built.path.name
    refused = seen["serve"]
    assert refused.returncode == 1  # type: ignore[attr-defined]
    assert refused.stderr.startswith(  # type: ignore[attr-defined]
        f"error: another hardmail restore (pid {os.getpid()}, started {holder['started']}) is using {into}\n")
    assert "Traceback" not in refused.stderr  # type: ignore[attr-defined]
    assert lock_holder(into) is None  # released at the end
    assert (into / "hardmail.db").is_file()


async def test_a_restore_refuses_a_directory_a_running_server_uses(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    live = tmp_path / "live"
    with serving("--data-dir", str(live), cwd=tmp_path, env=cli_env(HARDMAIL_SERVER__WORKERS="1")) as server:
        before = sorted(p.name for p in live.iterdir())
        with pytest.raises(RestoreError, match=rf"a hardmail server \(pid {server.pid}\) is using {live}; stop it"):
            await restore_full(built.path, live, force=True)
        assert sorted(p.name for p in live.iterdir()) == before
        assert lock_holder(live) is not None and lock_holder(live)["pid"] == server.pid  # type: ignore[index]
    assert not list(tmp_path.glob("live.before-restore-*")) and not list(tmp_path.glob(".live.restore-*"))


async def test_a_restore_into_an_empty_directory_refuses_a_held_lock(sample: SampleData, tmp_path: Path) -> None:
    """A server that holds the lock of a directory with nothing else in it yet."""
    from hardmail.ops.runstate import ServerLock

    built = _build(sample, tmp_path)
    into = tmp_path / "fresh"
    into.mkdir()
    lock = ServerLock.acquire(into, {"listeners": []})
    try:
        with pytest.raises(RestoreError, match=rf"a hardmail server \(pid {os.getpid()}\) is using"):
            await restore_full(built.path, into)
    finally:
        lock.release()
    assert [p.name for p in into.iterdir()] == ["hardmail.lock"]


# --- 3: a failed --force restore -------------------------------------------------------------

async def test_a_failed_forced_restore_puts_the_old_contents_back(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    truncate_file(built.path, 0.5)
    live = tmp_path / "live"
    live.mkdir()
    (live / "precious.txt").write_text("keep me")
    with pytest.raises(RestoreError, match=f"damaged or truncated.*; the old contents of {live} were put back"):
        await restore_full(built.path, live, force=True)
    assert (live / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in live.iterdir()) == ["hardmail.lock", "precious.txt"]
    assert not list(tmp_path.glob("live.before-restore-*")) and not list(tmp_path.glob(".live.restore-*"))
    assert lock_holder(live) is None


# --- 10: modes -------------------------------------------------------------------------------

async def test_restored_modes_are_the_servers_only(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    message = next(e.path for e in built.manifest.files if e.path.startswith("files/mail/"))

    def crafted(manifest: Manifest) -> Manifest:
        manifest = _with_entry(manifest, message, lambda e: replace(e, mode=0o6777))
        manifest = _with_entry(manifest, "files/server.key", lambda e: replace(e, mode=0o666))
        return _with_entry(manifest, "files/tls/cert.pem", lambda e: replace(e, mode=0o400))

    _change_manifest(built.path, crafted)
    into = tmp_path / "restored"
    await restore_full(built.path, into)
    assert stat.S_IMODE((into / message.removeprefix("files/")).stat().st_mode) == 0o700
    assert stat.S_IMODE((into / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((into / "tls/cert.pem").stat().st_mode) == 0o600
    for directory in (p for p in into.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_the_rewritten_configuration_is_private(tmp_path: Path) -> None:
    config = tmp_path / "hardmail.toml"
    config.write_text('[server]\ndata_dir = "/old"\n\n[storage]\nurl = "postgresql+asyncpg://u@h/old"\n')
    config.chmod(0o644)
    restore_config.rewrite(config, tmp_path, "postgresql+asyncpg://u:secret@h/new", "/old")
    assert "u:secret@h/new" in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


# --- 11: members the manifest does not list, bounded staging ---------------------------------

async def test_a_member_not_in_the_manifest_is_refused_before_its_bytes_are_written(sample: SampleData,
                                                                                   tmp_path: Path) -> None:
    built = _build(sample, tmp_path)  # its catalog record says how many bytes it stores
    big = 8 << 20
    add_member(built.path, "files/zeros", bytes(big))
    written: list[int] = []
    into = tmp_path / "restored"
    with pytest.raises(RestoreError, match=r"member 'files/zeros' \(8388608 bytes\) takes the archive past the "
                                           r"\d+ stored bytes its catalog record lists"):
        await restore_full(built.path, into, progress=lambda phase, done, total: written.append(done))
    assert max(written, default=0) < big
    assert [p.name for p in into.iterdir()] == ["hardmail.lock"]


async def test_an_unlisted_member_is_an_error_without_a_catalog_record(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    built.path.with_name(f"{built.name}.json").unlink()
    add_member(built.path, "files/stowaway", b"not in the manifest")
    with pytest.raises(RestoreError, match=f"member files/stowaway is in archive {built.name} but not in its manifest"):
        await restore_full(built.path, tmp_path / "restored")


async def test_a_member_larger_than_its_entry_is_refused_before_it_is_staged(sample: SampleData,
                                                                            tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    grown = 8 << 20
    rewrite_archive(built.path, lambda name, data: bytes(grown) if name == "files/server.key" else data)
    written: list[int] = []
    with pytest.raises(RestoreError, match=r"files/server.key' \(8388608 bytes\) takes the archive past"):
        await restore_full(built.path, tmp_path / "restored", progress=lambda p, done, t: written.append(done))
    assert max(written, default=0) < grown


# --- 16(a): the refusal of a newer schema ----------------------------------------------------

def _newer_schema(archive: Path, written_by: str | None, manifest_version: str) -> None:
    """The archive as a newer hardmail would write it: an unknown schema revision, and the
    database's ``schema.written_by_version`` setting set to ``written_by``."""
    changed: dict[str, tuple[int, str]] = {}

    def change(name: str, data: bytes) -> bytes:
        if name == "database/hardmail.db":
            data = _with_setting(data, written_by)
            changed[name] = (len(data), hashlib.sha256(data).hexdigest())
            return data
        if name != MANIFEST_MEMBER:
            return data
        manifest = Manifest.from_json(data)
        size, sha = changed[manifest.database.member]
        manifest = _with_entry(manifest, manifest.database.member, lambda e: replace(e, size=size, sha256=sha))
        return replace(manifest, schema_revision="9999_future", hardmail_version=manifest_version).to_json()

    rewrite_archive(archive, change)
    archive.with_name(archive.name.removesuffix(".tar.zst") + ".json").unlink()


def _with_setting(database: bytes, written_by: str | None) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "db"
        path.write_bytes(database)
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM settings WHERE key = ?", (WRITTEN_BY_KEY,))
            if written_by is not None:
                db.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (WRITTEN_BY_KEY, written_by))
        db.close()
        return path.read_bytes()


async def test_a_newer_schema_is_refused_naming_the_hardmail_that_wrote_the_database(sample: SampleData,
                                                                                     tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    ours = hardmail_version()
    _newer_schema(built.path, "7.3", ours)  # the manifest says this version: the database knows better
    with pytest.raises(RestoreError) as refused:
        await restore_full(built.path, tmp_path / "restored")
    assert str(refused.value) == (
        f"the archive's database was last upgraded by hardmail 7.3 (schema revision 9999_future), newer than this "
        f"hardmail {ours}; restore it with hardmail 7.3 or newer")


async def test_a_newer_schema_of_this_version_number_is_refused_without_naming_this_version(
        sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    ours = hardmail_version()
    _newer_schema(built.path, None, ours)  # a development build of the same version number
    with pytest.raises(RestoreError) as refused:
        await restore_full(built.path, tmp_path / "restored")
    assert str(refused.value) == (
        f"the archive's database has schema revision 9999_future, written by a hardmail newer than this hardmail "
        f"{ours}; restore it with that newer hardmail")
    assert f"hardmail {ours} or newer" not in str(refused.value)
