"""Safe upgrades for real (issue 13): ``hardmail upgrade`` and ``hardmail serve`` on a database an
earlier release left, ``--dry-run`` on SQLite and PostgreSQL with the live database untouched, the
backup that must come first (a failed one stops the upgrade), ``--no-backup``, the refusal of a
schema written by a newer hardmail, and ``hardmail --version``.

The old databases come from ``support.schema_history`` (migrations up to the revision, rows of
that time, alembic_version as that release stamped it). A backup is made to fail for real: a
regular file stands where its destination directory would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from hardmail.config.schema import Config
from hardmail.store import open_store
from hardmail.store.sql.migrate import WRITTEN_BY_KEY, hardmail_version, head_revision
from support.cli_process import EPHEMERAL_LISTENERS, cli_env, run_cli, serving
from support.postgres import scratch_database
from support.schema_history import CHAIN, branched_heads, build_database_at, check_rows

OLD = "0004_access"
PENDING = list(CHAIN[CHAIN.index(OLD) + 1:])


def _sqlite_url(data: Path) -> str:
    return f"sqlite+aiosqlite:///{data / 'hardmail.db'}"


@pytest.fixture
def old_data(tmp_path: Path) -> Path:
    """A data directory whose database an earlier release (at OLD) left, with its rows."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    asyncio.run(build_database_at(_sqlite_url(data), OLD))
    return data


def _stamped(data: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data / "hardmail.db")) as connection:
        return sorted(row[0] for row in connection.execute("SELECT version_num FROM alembic_version"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _errors(stderr: str) -> list[str]:
    """The human lines of standard error (JSON log lines left out)."""
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def _events(stderr: str, name: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in stderr.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == name]


def _check_rows(data: Path, revision: str = OLD, skip: tuple[str, ...] = ()) -> None:
    async def check() -> None:
        store = await open_store(_sqlite_url(data))
        try:
            await check_rows(store, revision, skip)
        finally:
            await store.close()

    asyncio.run(check())


def _block_backups(data: Path) -> None:
    (data / "backups").write_text("not a directory\n")  # the default destination cannot be made


# --- dry run ---------------------------------------------------------------------------------


def test_a_dry_run_reports_the_pending_migrations_and_leaves_the_database_alone(old_data: Path) -> None:
    before, stamped = _digest(old_data / "hardmail.db"), _stamped(old_data)
    result = run_cli("upgrade", "--dry-run", "--json", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["from"], report["to"], report["live_database_changed"]) == (OLD, head_revision(), False)
    assert [m["revision"] for m in report["migrations"]] == PENDING
    assert report["migrations"][0]["description"] == "Greylisting: greylist_triplets, greylist_networks."
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["greylist_triplets"]["change"] == "added"
    assert tables["accounts"]["change"] == "changed"
    assert (tables["accounts"]["rows_before"], tables["accounts"]["rows_after"]) == (2, 2)
    assert any(d.startswith("+ column frozen BOOLEAN NOT NULL") for d in tables["accounts"]["details"])
    assert tables["access_bans"]["details"] == ["+ index ix_access_bans_expires_at (expires_at)"]
    assert "alembic_version" not in tables and "domains" not in tables
    assert (_digest(old_data / "hardmail.db"), _stamped(old_data)) == (before, stamped)
    assert sorted(p.name for p in old_data.iterdir()) == ["hardmail.db"]


def test_a_dry_run_reads_as_a_report_for_an_admin(old_data: Path) -> None:
    result = run_cli("upgrade", "--dry-run", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"dry run on {old_data / 'hardmail.db'}, on a copy")
    assert lines[0].endswith("the live database was not changed")
    assert lines[1].startswith(f"would upgrade {OLD} → {head_revision()}: {len(PENDING)} migrations, ")
    assert "  ~ accounts (2 rows → 2 rows)" in lines
    assert _stamped(old_data) == branched_heads(OLD)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of its own for one test, dropped after it."""
    with scratch_database("hardmail_upgrade") as url:
        yield url


async def _postgres_tables(url: str) -> tuple[list[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            stamped = sorted((await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())
            tables = await connection.run_sync(lambda sync: set(sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    return stamped, tables


@pytest.mark.postgres
def test_a_dry_run_on_postgresql_rolls_its_transaction_back(postgres_url: str, tmp_path: Path) -> None:
    asyncio.run(build_database_at(postgres_url, OLD))
    before = asyncio.run(_postgres_tables(postgres_url))
    env = cli_env(HARDMAIL_STORAGE__URL=postgres_url)
    result = run_cli("upgrade", "--dry-run", "--json", "-d", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [m["revision"] for m in report["migrations"]] == PENDING
    assert report["method"] == "in a PostgreSQL transaction, rolled back"
    assert {t["table"] for t in report["tables"] if t["change"] == "added"} >= {"greylist_triplets", "mailbox_folders"}
    assert asyncio.run(_postgres_tables(postgres_url)) == before
    assert "mailbox_folders" not in before[1] and before[0] == branched_heads(OLD)


@pytest.mark.postgres
def test_upgrade_on_postgresql_keeps_every_row(postgres_url: str, tmp_path: Path) -> None:
    asyncio.run(build_database_at(postgres_url, OLD))
    env = cli_env(HARDMAIL_STORAGE__URL=postgres_url)
    result = run_cli("upgrade", "--no-backup", "--json", "-d", str(tmp_path / "data"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert [m["revision"] for m in json.loads(result.stdout)["migrations"]] == PENDING
    stamped, tables = asyncio.run(_postgres_tables(postgres_url))
    assert stamped == [head_revision()] and "mailbox_folders" in tables

    async def check() -> None:
        store = await open_store(postgres_url)
        try:
            await check_rows(store, OLD)
        finally:
            await store.close()

    asyncio.run(check())


# --- hardmail upgrade ------------------------------------------------------------------------


def test_upgrade_without_a_database_or_with_nothing_pending_says_so(tmp_path: Path) -> None:
    missing = run_cli("upgrade", "-d", str(tmp_path / "data"), cwd=tmp_path)
    assert missing.returncode == 0, missing.stderr
    assert missing.stdout.startswith(f"there is no database yet ({tmp_path / 'data' / 'hardmail.db'})")
    assert not (tmp_path / "data").exists()
    assert run_cli("domain", "add", "example.org", "-d", str(tmp_path / "data"), cwd=tmp_path).returncode == 0
    current = run_cli("upgrade", "-d", str(tmp_path / "data"), cwd=tmp_path)
    assert current.returncode == 0, current.stderr
    assert current.stdout == (f"the database schema is at {head_revision()}, the newest this hardmail "
                              f"({hardmail_version()}) knows: nothing to upgrade\n")


def test_a_command_refuses_an_old_database_and_names_the_upgrade(old_data: Path) -> None:
    result = run_cli("domain", "add", "new.example", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 1
    assert _errors(result.stderr) == [
        "error: the database needs an upgrade: run `hardmail upgrade` (takes a backup first)",
        f"hint: its schema revision is {OLD}, this hardmail writes {head_revision()}; "
        "`hardmail upgrade --dry-run` shows what would change"]
    assert _stamped(old_data) == branched_heads(OLD)


def test_a_failed_backup_stops_the_upgrade(old_data: Path) -> None:
    _block_backups(old_data)
    result = run_cli("upgrade", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 1, result.stdout
    [error, hint] = _errors(result.stderr)
    assert error.startswith(f"error: cannot upgrade the database schema from {OLD} to {head_revision()}: "
                            "the backup before it failed: ")
    assert hint == ("hint: fix the cause and try again; `--no-backup` (on `hardmail serve` or `hardmail upgrade`) "
                    "upgrades without a backup, at your own risk")
    assert _events(result.stderr, "schema.upgrade_backup")[0]["result"] == "failure"
    assert _stamped(old_data) == branched_heads(OLD)


def test_upgrade_with_no_backup_warns_and_upgrades_keeping_every_row(old_data: Path) -> None:
    result = run_cli("upgrade", "--no-backup", "--json", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert (outcome["from"], outcome["to"], outcome["upgraded"]) == (OLD, head_revision(), True)
    assert (outcome["backup"], outcome["backup_skipped"]) == (None, "--no-backup")
    assert outcome["collapsed"] == branched_heads(OLD)
    assert [m["revision"] for m in outcome["migrations"]] == PENDING
    assert _errors(result.stderr) == [
        f"warning: upgrading the database schema from {OLD} to {head_revision()} without a backup (--no-backup): "
        "if the upgrade goes wrong, only an older backup can bring the data back"]
    [upgraded] = _events(result.stderr, "schema.upgraded")
    assert (upgraded["from"], upgraded["to"]) == (OLD, head_revision())
    assert _stamped(old_data) == [head_revision()]
    _check_rows(old_data)
    again = run_cli("upgrade", "-d", str(old_data), cwd=old_data.parent)
    assert again.returncode == 0 and "nothing to upgrade" in again.stdout


def test_upgrade_takes_a_verified_full_backup_first(old_data: Path) -> None:
    pytest.importorskip("hardmail.ops.backup.create", reason="the backup creation of issue 13 is not merged yet")
    result = run_cli("upgrade", "--json", "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 0, result.stderr
    archive = Path(json.loads(result.stdout)["backup"])
    assert archive.parent == old_data / "backups" and archive.is_file()
    record = json.loads(archive.parent.joinpath(archive.name.split(".")[0] + ".json").read_text())
    assert (record["kind"], record["schema_revision"], record["verify"]["ok"]) == ("full", OLD, True)
    [backup] = _events(result.stderr, "schema.upgrade_backup")
    assert (backup["result"], backup["archive"]) == ("success", str(archive))
    assert _stamped(old_data) == [head_revision()]


def test_before_upgrade_false_skips_the_backup_with_a_warning(old_data: Path) -> None:
    if "backup" not in Config.model_fields:
        pytest.skip("the [backup] configuration of issue 13 is not merged yet")
    _block_backups(old_data)  # would fail if it were taken
    config = old_data.parent / "hardmail.toml"
    config.write_text(f'[server]\ndata_dir = "{old_data}"\n\n[backup]\nbefore_upgrade = false\n')
    result = run_cli("upgrade", "--json", "-c", str(config), cwd=old_data.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backup_skipped"] == "[backup] before_upgrade = false"
    assert "without a backup ([backup] before_upgrade = false)" in result.stderr
    assert _stamped(old_data) == [head_revision()]


def test_upgrade_is_refused_while_a_server_runs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving("-d", str(data), cwd=tmp_path) as served:
        result = run_cli("upgrade", "-d", str(data), cwd=tmp_path)
    assert result.returncode == 1
    [error, hint] = _errors(result.stderr)
    assert error.startswith(f"error: cannot upgrade while a server runs: another hardmail server (pid {served.pid},")
    assert hint.startswith("hint: stop it first")


# --- the server start ------------------------------------------------------------------------


def test_serve_with_no_backup_upgrades_an_old_database_before_it_starts(old_data: Path) -> None:
    with serving("-d", str(old_data), "--no-backup", cwd=old_data.parent,
                 env=cli_env(HARDMAIL_SERVER__WORKERS="2")) as served:
        assert _stamped(old_data) == [head_revision()]
    assert f"warning: upgrading the database schema from {OLD} to {head_revision()} without a backup " \
           "(--no-backup)" in served.stderr
    [upgraded] = _events(served.stderr, "schema.upgraded")
    assert (upgraded["from"], upgraded["to"], upgraded["revisions"]) == (OLD, head_revision(), PENDING)
    _check_rows(old_data, skip=("0002_queue",))  # the started server dropped the queued mail without spool files


def test_serve_takes_a_backup_before_it_upgrades(old_data: Path) -> None:
    pytest.importorskip("hardmail.ops.backup.create", reason="the backup creation of issue 13 is not merged yet")
    with serving("-d", str(old_data), cwd=old_data.parent):
        assert _stamped(old_data) == [head_revision()]
    archives = sorted((old_data / "backups").glob("hardmail-*-full.json"))
    assert len(archives) == 1 and json.loads(archives[0].read_text())["schema_revision"] == OLD
    _check_rows(old_data, skip=("0002_queue",))


def test_serve_does_not_start_when_the_backup_before_the_upgrade_fails(old_data: Path) -> None:
    _block_backups(old_data)
    result = run_cli("serve", *EPHEMERAL_LISTENERS, "-d", str(old_data), cwd=old_data.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "hardmail is running" not in result.stdout
    [error, hint] = _errors(result.stderr)
    assert error.startswith(f"error: cannot start: cannot upgrade the database schema from {OLD} to "
                            f"{head_revision()}: the backup before it failed: ")
    assert "`--no-backup`" in hint and "at your own risk" in hint
    assert _stamped(old_data) == branched_heads(OLD)


def _stamp_newer(data: Path) -> str:
    with contextlib.closing(sqlite3.connect(data / "hardmail.db")) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = '0012_future'")
        connection.execute("UPDATE settings SET value = '9.9.0' WHERE key = ?", (WRITTEN_BY_KEY,))
    return (f"the database was last upgraded by hardmail 9.9.0 (schema revision 0012_future), newer than this "
            f"hardmail {hardmail_version()} (schema revision {head_revision()}); install hardmail 9.9.0 or newer, "
            "or restore a backup made with this version")


def test_a_database_of_a_newer_hardmail_is_refused_everywhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("domain", "add", "example.org", "-d", str(data), cwd=tmp_path).returncode == 0
    refusal = _stamp_newer(data)
    before = _digest(data / "hardmail.db")
    serve = run_cli("serve", *EPHEMERAL_LISTENERS, "-d", str(data), cwd=tmp_path)
    assert serve.returncode == 1 and "Traceback" not in serve.stderr
    assert _errors(serve.stderr)[0] == f"error: cannot start: {refusal}"
    assert _events(serve.stderr, "schema.refused")[0]["written_by"] == "9.9.0"
    for command in (("domain", "list"), ("domain", "add", "other.example"), ("upgrade",), ("upgrade", "--dry-run")):
        result = run_cli(*command, "-d", str(data), cwd=tmp_path)
        assert result.returncode == 1, command
        assert "Traceback" not in result.stderr
        assert _errors(result.stderr)[0] == f"error: {refusal}", command
    assert _digest(data / "hardmail.db") == before


def test_version_names_the_schema_revisions_of_this_build_and_of_the_database(old_data: Path) -> None:
    env = cli_env(HARDMAIL_DATA_DIR=str(old_data))
    ours = f"schema revision {head_revision()} (the newest this version writes)"
    old = run_cli("--version", cwd=old_data.parent, env=env)
    where = f"database {old_data / 'hardmail.db'}"
    assert old.stdout.splitlines() == [
        f"hardmail {hardmail_version()}", ours,
        f"{where}: schema revision {OLD}; `hardmail upgrade` brings it to {head_revision()}"]
    assert run_cli("upgrade", "--no-backup", "-d", str(old_data), cwd=old_data.parent).returncode == 0
    current = run_cli("--version", cwd=old_data.parent, env=env)
    assert current.stdout.splitlines()[2] == f"{where}: schema revision {head_revision()} (current)"
    _stamp_newer(old_data)
    newer = run_cli("--version", cwd=old_data.parent, env=env)
    assert newer.stdout.splitlines()[2] == f"{where}: schema revision 0012_future, written by hardmail 9.9.0: " \
                                           "unknown to this version"
