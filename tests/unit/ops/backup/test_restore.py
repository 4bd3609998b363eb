"""``restore_full`` and ``extract_chain``: a full or incremental archive restores the data
directory file for file (bytes, modes, times) with its database at the newest schema; a restore
never writes over data without ``force`` (and then moves it aside, only when no server holds
the directory), refuses a damaged or undecryptable archive leaving nothing behind, and migrates
an archive of an older schema revision."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from hardmail.ops.backup.archive import new_identity, sha256_file
from hardmail.ops.backup.manifest import MANIFEST_MEMBER, Manifest
from hardmail.ops.backup.restore import RestoreError, extract_chain, find_archive, restore_full
from hardmail.ops.runstate import ServerLock
from hardmail.store.sql.migrate import head_revision
from support.backup_archives import (
    ALICE,
    BuiltArchive,
    SampleData,
    build_archive,
    data_files,
    flip_member_byte,
    make_data_dir,
    message_entries,
    rewrite_archive,
    sqlite_revision,
)


@pytest.fixture
async def sample(tmp_path: Path) -> SampleData:
    return await make_data_dir(tmp_path / "data")


def _build(sample: SampleData, tmp_path: Path, **options: object) -> BuiltArchive:
    return build_archive(sample.data_dir, tmp_path / "backups", **options)  # type: ignore[arg-type]


def _state(data_dir: Path) -> dict[str, tuple[str, int, int]]:
    """relative path → (sha256, mode, mtime_ns) of every file a backup stores."""
    found = {}
    for relative in data_files(data_dir):
        info = os.stat(data_dir / relative)
        found[relative] = (sha256_file(data_dir / relative), stat.S_IMODE(info.st_mode), info.st_mtime_ns)
    return found


def _messages(database: Path) -> list[tuple[str, str, int, str, str]]:
    with sqlite3.connect(database) as db:
        return sorted(db.execute("SELECT f.account, f.name, m.uid, m.name, m.flags FROM mailbox_messages m "
                                 "JOIN mailbox_folders f ON f.id = m.folder_id"))


def _folders(database: Path) -> list[tuple[str, str, int, int]]:
    with sqlite3.connect(database) as db:
        return sorted(db.execute("SELECT account, name, uidvalidity, uidnext FROM mailbox_folders"))


async def test_a_full_archive_restores_the_data_directory(sample: SampleData, tmp_path: Path) -> None:
    before = _state(sample.data_dir)
    built = _build(sample, tmp_path)
    into = tmp_path / "restored"
    report = await restore_full(built.path, into)
    assert _state(into) == before
    assert _messages(into / "hardmail.db") == _messages(sample.data_dir / "hardmail.db")
    assert _folders(into / "hardmail.db") == _folders(sample.data_dir / "hardmail.db")
    assert report.files == len(built.manifest.files) - 1  # all but the database copy
    assert report.messages == len(message_entries(built.manifest))
    assert report.schema_from == report.schema_to == head_revision()
    assert report.config_file is None and report.external_dir is None and report.moved_aside is None
    assert report.start_command() == f"hardmail serve --data-dir {into}"
    assert stat.S_IMODE((into / "hardmail.db").stat().st_mode) == 0o600
    for directory in [into, *(p for p in into.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert not [p for p in into.iterdir() if p.name.startswith(".hardmail-restore-")]


async def test_an_incremental_chain_restores_the_newest_state(sample: SampleData, tmp_path: Path) -> None:
    full = _build(sample, tmp_path)
    renamed = await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    entry = next(e for e in incremental.manifest.files if e.path.endswith(renamed))
    assert entry.archive == full.name and entry.member != entry.path  # renamed since: bytes in the full one
    before = _state(sample.data_dir)
    into = tmp_path / "restored"
    await restore_full(incremental.path, into)
    assert _state(into) == before
    assert _messages(into / "hardmail.db") == _messages(sample.data_dir / "hardmail.db")


async def _change_mail(sample: SampleData) -> str:
    """Flag one message (its file is renamed), add one; returns the new file name."""
    from hardmail.core.clock import SystemClock
    from hardmail.mailbox import MailboxStore
    from hardmail.store import open_store
    from support.backup_archives import HOSTNAME, message

    store = await open_store(sample.database_url)
    try:
        mailboxes = MailboxStore(sample.config.maildir_root, store.mailbox, HOSTNAME, SystemClock())
        uid = sample.uids[(ALICE, "INBOX")][2]
        await mailboxes.store_flags(ALICE, "INBOX", [uid], "add", ["\\Flagged"])
        await mailboxes.append(ALICE, "INBOX", message("after the full backup"), ["\\Seen"])
        path = await mailboxes.message_path(ALICE, "INBOX", uid)
    finally:
        await store.close()
    assert path is not None
    return path.name


async def test_a_selection_of_the_chain_is_extracted_as_archive_paths(sample: SampleData, tmp_path: Path) -> None:
    full = _build(sample, tmp_path)
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    into = tmp_path / "scratch"
    manifest = await asyncio.to_thread(extract_chain, incremental.path, into,
                                       select=lambda e: e.path.startswith("files/mail/example.org/alice/"))
    assert manifest == incremental.manifest
    written = sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())
    assert written == sorted(e.path for e in manifest.files if e.path.startswith("files/mail/example.org/alice/"))


async def test_a_non_empty_directory_is_refused_and_moved_aside_with_force(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    into = tmp_path / "live"
    into.mkdir()
    (into / "precious.txt").write_text("keep me")
    with pytest.raises(RestoreError, match=r"is not empty.*--force"):
        await restore_full(built.path, into)
    assert (into / "precious.txt").read_text() == "keep me"
    report = await restore_full(built.path, into, force=True)
    assert report.moved_aside is not None and report.moved_aside.name.startswith("live.before-restore-")
    assert (report.moved_aside / "precious.txt").read_text() == "keep me"
    assert not (into / "precious.txt").exists()
    assert (into / "hardmail.db").is_file()


async def test_force_is_refused_while_a_server_holds_the_directory(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    into = tmp_path / "live"
    into.mkdir()
    lock = ServerLock.acquire(into, {"listeners": []})
    try:
        with pytest.raises(RestoreError, match=f"a hardmail server \\(pid {os.getpid()}\\) is using"):
            await restore_full(built.path, into, force=True)
    finally:
        lock.release()
    assert (into / "hardmail.lock").exists() and not (into / "hardmail.db").exists()


async def test_a_damaged_archive_is_refused_and_leaves_nothing(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    victim = message_entries(built.manifest)[0].path
    flip_member_byte(built.path, victim)
    into = tmp_path / "restored"
    with pytest.raises(RestoreError, match=f"{victim}: SHA-256 differs from the manifest"):
        await restore_full(built.path, into)
    assert [child.name for child in into.iterdir()] == ["hardmail.lock"]  # released, empty


async def test_an_unsafe_path_in_the_manifest_is_refused(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)

    def escape(name: str, data: bytes) -> bytes:
        if name != MANIFEST_MEMBER:
            return data
        manifest = Manifest.from_json(data)
        first = manifest.files[0]
        return replace(manifest, files=(replace(first, path="files/../../outside"), *manifest.files[1:])).to_json()

    rewrite_archive(built.path, escape)
    with pytest.raises(RestoreError, match="unsafe path"):
        await restore_full(built.path, tmp_path / "restored")
    assert not (tmp_path / "outside").exists()


async def test_an_encrypted_archive_restores_with_its_identity_only(sample: SampleData, tmp_path: Path) -> None:
    secret, public = new_identity()
    identity = tmp_path / "backup.key"
    identity.write_text(secret + "\n")
    built = _build(sample, tmp_path, recipients=[public])
    with pytest.raises(RestoreError, match="--identity"):
        await restore_full(built.path, tmp_path / "without")
    other = tmp_path / "other.key"
    other.write_text(new_identity()[0] + "\n")
    with pytest.raises(RestoreError, match="cannot decrypt") as refused:
        await restore_full(built.path, tmp_path / "wrong", [other])
    assert secret not in str(refused.value)
    before = _state(sample.data_dir)
    await restore_full(built.path, tmp_path / "restored", [identity])
    assert _state(tmp_path / "restored") == before


async def test_a_missing_archive_of_the_chain_is_named(sample: SampleData, tmp_path: Path) -> None:
    full = _build(sample, tmp_path)
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    full.path.unlink()
    assert find_archive(full.path.parent, full.name) is None
    with pytest.raises(RestoreError, match=f"archive {full.name} of the chain of {incremental.name} is missing"):
        await restore_full(incremental.path, tmp_path / "restored")


async def test_the_configuration_and_external_files_are_restored(sample: SampleData, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "mail.toml"
    config.parent.mkdir()
    config.write_text(f'# the server\n[server]\nhostname = "mail.example.org"\ndata_dir = "{sample.data_dir}"\n'
                      f'\n[tls]\ncert_file = "{tmp_path}/etc/cert.pem"\n')
    cert = tmp_path / "etc" / "cert.pem"
    cert.write_text("certificate")
    built = _build(sample, tmp_path, config_file=config, external=[cert])
    into = tmp_path / "restored"
    report = await restore_full(built.path, into)
    assert report.config_file == into / "hardmail.toml"
    text = (into / "hardmail.toml").read_text()
    assert text.startswith("# the server\n[server]\n")
    assert f'data_dir = "{into}"' in text
    assert (into / "restored-external" / "1-cert.pem").read_text() == "certificate"
    assert report.external_dir == into / "restored-external"
    assert any("restored-external" in note for note in report.notes)
    assert report.start_command() == f"hardmail serve --config {into}/hardmail.toml --data-dir {into}"


async def test_an_older_schema_revision_is_migrated(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    old = await _database_at_older_revision(data_dir / "hardmail.db")
    (data_dir / "server.key").write_bytes(b"k" * 44 + b"\n")
    built = build_archive(data_dir, tmp_path / "backups")
    assert built.manifest.schema_revision == old != head_revision()
    into = tmp_path / "restored"
    report = await restore_full(built.path, into)
    assert (report.schema_from, report.schema_to) == (old, head_revision())
    assert sqlite_revision(into / "hardmail.db") == head_revision()
    with sqlite3.connect(into / "hardmail.db") as db:
        assert db.execute("SELECT name FROM domains").fetchall() == [("old.example",)]


async def _database_at_older_revision(path: Path) -> str:
    """A database at the revisions just before the newest head, with one domain in it."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from hardmail.store.sql.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    newest = max((script.get_revision(head) for head in script.get_heads()),  # the head with the longest history
                 key=lambda rev: len(list(script.iterate_revisions(rev.revision, "base"))))
    assert newest is not None and newest.down_revision is not None
    parents = newest.down_revision
    targets = sorted(h for h in script.get_heads() if h != newest.revision) + sorted(
        [parents] if isinstance(parents, str) else list(parents or ()))
    path.parent.mkdir(parents=True, mode=0o700)
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = alembic_config(connection)
        for target in targets:
            command.upgrade(config, target)
        connection.exec_driver_sql("INSERT INTO domains (name, enabled, created_at) "
                                   "VALUES ('old.example', 1, '2024-01-01 00:00:00.000000')")
    engine.dispose()
    revision = sqlite_revision(path)
    assert revision is not None
    return revision


async def test_an_archive_of_an_unknown_newer_revision_is_refused_before_writing(sample: SampleData,
                                                                                 tmp_path: Path) -> None:
    built = _build(sample, tmp_path)

    def newer(name: str, data: bytes) -> bytes:
        if name != MANIFEST_MEMBER:
            return data
        return replace(Manifest.from_json(data), schema_revision="9999_future", hardmail_version="9.0").to_json()

    rewrite_archive(built.path, newer)
    into = tmp_path / "restored"
    with pytest.raises(RestoreError, match=re.escape(
            "last upgraded by hardmail 9.0 (schema revision 9999_future), newer than this hardmail ")):
        await restore_full(built.path, into)
    assert [child.name for child in into.iterdir()] == ["hardmail.lock"]  # released, empty


async def test_a_database_url_is_refused_for_an_sqlite_archive(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    with pytest.raises(RestoreError, match="--database-url is for archives of a server on PostgreSQL"):
        await restore_full(built.path, tmp_path / "restored", database_url="postgresql+asyncpg://u@h/db")


async def test_a_configuration_inside_the_data_directory_is_restored_once(sample: SampleData,
                                                                          tmp_path: Path) -> None:
    config = sample.data_dir / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{sample.data_dir}"\n')
    built = _build(sample, tmp_path, config_file=config)
    assert {"files/hardmail.toml", "config/hardmail.toml"} <= {e.path for e in built.manifest.files}
    into = tmp_path / "restored"
    report = await restore_full(built.path, into)
    assert (into / "hardmail.toml").read_text() == f'[server]\ndata_dir = "{into}"\n'
    assert report.files == len(built.manifest.files) - 2  # neither the database copy nor the second config


async def test_an_archive_inside_the_target_is_refused(sample: SampleData, tmp_path: Path) -> None:
    built = _build(sample, tmp_path)
    with pytest.raises(RestoreError, match="is inside"):
        await restore_full(built.path, built.path.parent, force=True)
    assert built.path.is_file()


async def test_an_encrypted_chain_restores_with_its_identity(sample: SampleData, tmp_path: Path) -> None:
    secret, public = new_identity()
    identity = tmp_path / "backup.key"
    identity.write_text(secret + "\n")
    full = _build(sample, tmp_path, recipients=[public])
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full, recipients=[public])
    assert incremental.path.name.endswith(".tar.zst.age")
    before = _state(sample.data_dir)
    await restore_full(incremental.path, tmp_path / "restored", [identity])
    assert _state(tmp_path / "restored") == before


async def test_what_is_extracted_is_made_durable_by_one_sync_of_its_file_system(
        sample: SampleData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not one fsync per file and directory: one syncfs at the end, before extract_chain returns
    (and one in the background each 64 MiB written, none for these few files)."""
    from hardmail.ops.backup import restore

    full = _build(sample, tmp_path)
    await _change_mail(sample)
    incremental = _build(sample, tmp_path, parent=full)
    synced: list[Path] = []
    fsyncs: list[int] = []
    real_sync, real_fsync = restore.syncfs, os.fsync

    def recording_sync(fd: int, shown: Path) -> None:
        synced.append(shown)
        real_sync(fd, shown)

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(restore, "syncfs", recording_sync)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    into = tmp_path / "scratch"
    manifest = await asyncio.to_thread(extract_chain, incremental.path, into)
    assert synced == [into]
    assert len(fsyncs) <= 2  # the restore directory itself, when made
    assert sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file()) == sorted(
        e.path for e in manifest.files)
