"""The migration history and its reading (hardmail.store.sql.migrate), on SQLite files: one linear
chain; the rows of the old branched history collapse to the revision they amount to, or are refused;
the SQLite upgrade runs with foreign keys off, checks every reference before it commits and gives
its connection back with foreign keys on."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from hardmail.store import open_store
from hardmail.store.sql.engine import create_engine_for, for_writing
from hardmail.store.sql.migrate import (
    BRANCHED_PARENTS,
    WRITTEN_BY_KEY,
    SchemaIntegrityError,
    SchemaTooNew,
    branched_prefix,
    describe_revision,
    hardmail_version,
    head_revision,
    read_state,
    revision_chain,
    upgrade_to_head,
)
from support.schema_history import branched_heads, build_database_at, stamped_rows

RELEASED = ("0001", "0002_queue", "0003_credentials", "0004_access", "0005_msgauth", "0006_access_ban_expiry",
            "0007_account_freeze", "0007_login_guard", "0008_mailbox_index")


def test_the_history_is_one_line_in_the_order_the_revisions_were_added() -> None:
    assert revision_chain()[:len(RELEASED)] == RELEASED
    assert head_revision() == revision_chain()[-1]
    assert tuple(BRANCHED_PARENTS) == RELEASED  # the old layout describes exactly the released revisions


@pytest.mark.parametrize("revision", RELEASED)
def test_the_rows_a_branched_release_left_amount_to_its_revision(revision: str) -> None:
    assert branched_prefix(branched_heads(revision)) == revision


def test_the_heads_of_the_branched_history_were_several() -> None:
    assert branched_heads("0008_mailbox_index") == ["0002_queue", "0003_credentials", "0005_msgauth",
                                                     "0008_mailbox_index"]
    assert branched_heads("0006_access_ban_expiry") == ["0002_queue", "0003_credentials", "0005_msgauth",
                                                         "0006_access_ban_expiry"]


@pytest.mark.parametrize("rows", [
    ["0002_queue", "0005_msgauth"],  # 0003 and 0004 never applied: no release left that
    ["0003_credentials", "0007_account_freeze"],
    ["0002_queue", "0012_future"],  # a revision the old history never had
])
def test_rows_that_make_no_prefix_amount_to_nothing(rows: list[str]) -> None:
    assert branched_prefix(rows) is None


def test_a_revision_is_described_by_the_first_paragraph_of_its_docstring_on_one_line() -> None:
    assert describe_revision("0008_mailbox_index") == (
        "Mailbox index: mailbox_accounts, mailbox_folders, mailbox_messages, mailbox_vanished, "
        "mailbox_subscriptions, mailbox_changes.")


def _url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}"


async def test_a_new_database_has_every_revision_pending_and_gets_the_writer_recorded(tmp_path: Path) -> None:
    engine = create_engine_for(_url(tmp_path))
    try:
        state = await read_state(engine)
        assert (state.is_new, state.current, state.pending, state.needs_upgrade) == (True, None, revision_chain(),
                                                                                      False)
    finally:
        await engine.dispose()
    store = await open_store(_url(tmp_path))
    try:
        await store.migrate()
        assert await store.get_setting(WRITTEN_BY_KEY) == hardmail_version()
    finally:
        await store.close()


async def test_an_unknown_revision_without_a_recorded_writer_is_refused_naming_this_version(tmp_path: Path) -> None:
    await build_database_at(_url(tmp_path), "0001", "linear", fill=False)
    engine = create_engine_for(_url(tmp_path))
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.text("UPDATE alembic_version SET version_num = '0099_later'"))
        state = await read_state(engine)
        assert state.current is None and state.stamped == ("0099_later",)
        with pytest.raises(SchemaTooNew) as refused:
            state.check()
        assert str(refused.value) == (
            f"the database has schema revision 0099_later, written by a hardmail newer than this hardmail "
            f"{hardmail_version()} (schema revision {head_revision()}); install that newer hardmail, or restore "
            "a backup made with this version")
    finally:
        await engine.dispose()


async def test_an_upgrade_that_would_orphan_rows_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    await build_database_at(_url(tmp_path), "0006_access_ban_expiry", "branched", fill=False)
    with contextlib.closing(sqlite3.connect(tmp_path / "hardmail.db")) as by_hand, by_hand:
        by_hand.execute("INSERT INTO account_credentials (address, must_change) VALUES ('x@y', 0)")  # no such account
    engine = create_engine_for(_url(tmp_path))
    try:
        with pytest.raises(SchemaIntegrityError, match="rows whose reference is gone"):
            await upgrade_to_head(for_writing(engine))
        assert await stamped_rows(engine) == branched_heads("0006_access_ban_expiry")
        assert (await read_state(engine)).current == "0006_access_ban_expiry"
    finally:
        await engine.dispose()


async def test_connections_have_foreign_keys_on_again_after_an_upgrade(tmp_path: Path) -> None:
    await build_database_at(_url(tmp_path), "0004_access", "branched", fill=False)
    engine = create_engine_for(_url(tmp_path))
    try:
        await upgrade_to_head(for_writing(engine))
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
    finally:
        await engine.dispose()
