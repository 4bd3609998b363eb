"""Contract: a database of every earlier release upgrades to the newest schema with its rows intact
(SQLite and PostgreSQL); a schema written by a newer hardmail, or rows that make no known state,
are refused and left as they are; commands never upgrade an existing database.

Each database is built by the migrations up to the revision, filled with rows valid then and
stamped as that release stamped it (``support.schema_history``). The contract suite itself also
runs on an upgraded database (the ``sqlite-upgraded`` backend of the ``store`` fixture).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.store import open_store
from hardmail.store.sql.engine import create_engine_for, for_writing
from hardmail.store.sql.migrate import (
    WRITTEN_BY_KEY,
    SchemaTooNew,
    SchemaUnrecognised,
    SchemaUpgradeNeeded,
    hardmail_version,
    head_revision,
    upgrade_to_head,
)
from hardmail.store.sql.tables import metadata
from support.schema_history import (
    ALICE,
    BOB,
    CHAIN,
    EARLIER,
    IP,
    LAST_BRANCHED,
    WHEN,
    branched_heads,
    build_database_at,
    check_rows,
    stamped_rows,
)


def _schema_drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _upgrade_and_check(url: str, revision: str) -> None:
    engine = create_engine_for(url)
    try:
        result = await upgrade_to_head(for_writing(engine))
        assert result.before == revision
        assert [step.revision for step in result.steps] == list(CHAIN[CHAIN.index(revision) + 1:])
        assert await stamped_rows(engine) == [head_revision()]
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_drift) == []
    finally:
        await engine.dispose()
    store = await open_store(url)
    try:
        await store.migrate()  # current now: nothing to do
        await check_rows(store, revision)
        assert await store.get_setting(WRITTEN_BY_KEY) == hardmail_version()
    finally:
        await store.close()


@pytest.mark.parametrize("revision", EARLIER)
async def test_a_database_of_an_earlier_release_upgrades_with_its_rows_intact(
    empty_database_url: str, revision: str
) -> None:
    await build_database_at(empty_database_url, revision, "branched")
    await _upgrade_and_check(empty_database_url, revision)


@pytest.mark.parametrize("revision", ["0003_credentials", "0007_account_freeze"])
async def test_a_database_stamped_on_the_linear_history_upgrades_too(empty_database_url: str, revision: str) -> None:
    await build_database_at(empty_database_url, revision, "linear")
    await _upgrade_and_check(empty_database_url, revision)


async def _stamp(engine: AsyncEngine, *revisions: str, written_by: str | None = None) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text("DELETE FROM alembic_version"))
        for revision in revisions:
            await connection.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})
        if written_by is not None:
            await connection.execute(sa.text("UPDATE settings SET value = :v WHERE key = :k"),
                                     {"v": written_by, "k": WRITTEN_BY_KEY})


async def test_a_schema_of_a_newer_hardmail_is_refused_naming_both_versions(empty_database_url: str) -> None:
    store = await open_store(empty_database_url)
    try:
        await store.migrate()
        await store.add_domain("example.org")
        await _stamp(store.engine, "0012_future", written_by="9.9.0")  # type: ignore[attr-defined]
        expected = (f"the database was last upgraded by hardmail 9.9.0 (schema revision 0012_future), newer than this "
                    f"hardmail {hardmail_version()} (schema revision {head_revision()}); install hardmail 9.9.0 or "
                    "newer, or restore a backup made with this version")
        for attempt in (store.migrate, store.schema_is_current,
                        lambda: upgrade_to_head(for_writing(store.engine))):  # type: ignore[attr-defined]
            with pytest.raises(SchemaTooNew) as refused:
                await attempt()
            assert str(refused.value) == expected
        assert await stamped_rows(store.engine) == ["0012_future"]  # type: ignore[attr-defined]
        assert [d.name for d in await store.list_domains()] == ["example.org"]
    finally:
        await store.close()


async def test_rows_that_make_no_released_state_are_refused(empty_database_url: str) -> None:
    await build_database_at(empty_database_url, "0005_msgauth", "linear")
    store = await open_store(empty_database_url)
    try:
        await _stamp(store.engine, "0002_queue", "0005_msgauth")  # type: ignore[attr-defined]  # 0003, 0004 missing
        with pytest.raises(SchemaUnrecognised, match=r"0002_queue, 0005_msgauth"):
            await store.migrate()
        assert await stamped_rows(store.engine) == ["0002_queue", "0005_msgauth"]  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_a_command_never_upgrades_an_existing_database(empty_database_url: str) -> None:
    await build_database_at(empty_database_url, "0004_access", "branched")
    store = await open_store(empty_database_url)
    try:
        assert not await store.schema_is_current()
        with pytest.raises(SchemaUpgradeNeeded, match=r"run `hardmail upgrade` \(takes a backup first\)"):
            await store.migrate()
        assert await stamped_rows(store.engine) == branched_heads("0004_access")  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_a_branched_database_of_the_last_branched_release_is_restamped_and_upgraded(
    empty_database_url: str
) -> None:
    await build_database_at(empty_database_url, LAST_BRANCHED, "branched")
    store = await open_store(empty_database_url)
    try:
        assert await stamped_rows(store.engine) == branched_heads(LAST_BRANCHED)  # type: ignore[attr-defined]
        state = await store.schema_state()  # type: ignore[attr-defined]
        assert (state.current, state.needs_collapse) == (LAST_BRANCHED, True)
        result = await upgrade_to_head(for_writing(store.engine))  # type: ignore[attr-defined]
        assert (result.before, result.collapsed) == (LAST_BRANCHED, tuple(branched_heads(LAST_BRANCHED)))
        assert await stamped_rows(store.engine) == [head_revision()]  # type: ignore[attr-defined]
        await check_rows(store, LAST_BRANCHED)  # the rows of every release, untouched
    finally:
        await store.close()


async def _add_history(engine: AsyncEngine) -> None:
    """Rows that must not make a known source, and one that must (Bob's known source)."""
    rows = [("login", "failure", "203.0.113.1", ALICE), ("password-changed", "success", "203.0.113.2", ALICE),
            ("login", "success", "203.0.113.3", "gone@old.example"), ("login", "success", "", ALICE),
            ("login", "success", IP, ALICE)]
    async with engine.begin() as connection:
        for kind, result, ip, account in rows:
            await connection.execute(sa.text(
                "INSERT INTO login_history (at, account, kind, result, protocol, mechanism, client_ip, tls_version, "
                "detail) VALUES (:at, :account, :kind, :result, 'imap', 'PLAIN', :ip, '', '')"),
                {"at": WHEN.replace(tzinfo=None), "account": account, "kind": kind, "result": result, "ip": ip})
        await connection.execute(sa.text("INSERT INTO access_known_sources VALUES (:a, :ip, :at)"),
                                 {"a": BOB, "ip": "198.51.100.77", "at": WHEN.timestamp()})
        await connection.execute(sa.text("INSERT INTO access_known_sources VALUES ('gone@old.example', :ip, 0)"),
                                 {"ip": "203.0.113.4"})


async def test_the_upgrade_to_0009_knows_the_sources_of_successful_logins_of_existing_accounts(
    empty_database_url: str
) -> None:
    await build_database_at(empty_database_url, "0008_mailbox_index", "linear")
    engine = create_engine_for(empty_database_url)
    try:
        await _add_history(engine)
        await upgrade_to_head(for_writing(engine))
    finally:
        await engine.dispose()
    store = await open_store(empty_database_url)
    try:
        assert await store.security.sign_in_sources(ALICE) == [IP]
        assert await store.security.sign_in_sources(BOB) == ["198.51.100.77"]
        assert await store.security.sign_in_sources("gone@old.example") == []
        assert not await store.security.add_sign_in_source(BOB, "198.51.100.77", WHEN + timedelta(days=1))
        assert await store.get_setting("notices.feed_cursor") == "6"  # the fill's row and the five above
        assert [f.id for f in await store.security.login_events_after(6)] == []
    finally:
        await store.close()
