"""Contract: SettingsStore and the schema life-cycle (migrate, version, indexes), on every backend."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from hardmail.store import open_store
from hardmail.store.ports import Store
from hardmail.store.sql.migrate import head_revision
from hardmail.store.sql.tables import metadata


async def test_unknown_setting_is_none(store: Store) -> None:
    assert await store.get_setting("greeting") is None


async def test_setting_is_stored_and_replaced(store: Store) -> None:
    await store.set_setting("greeting", "hello")
    assert await store.get_setting("greeting") == "hello"
    await store.set_setting("greeting", "bye")
    assert await store.get_setting("greeting") == "bye"


async def test_settings_are_independent(store: Store) -> None:
    await store.set_setting("a", "1")
    await store.set_setting("b", "2")
    assert (await store.get_setting("a"), await store.get_setting("b")) == ("1", "2")


async def test_migrate_twice_keeps_data_and_version(store: Store) -> None:
    await store.add_domain("example.org")
    await store.migrate()
    await store.migrate()
    assert [d.name for d in await store.list_domains()] == ["example.org"]
    assert await store.schema_version() == head_revision()  # type: ignore[attr-defined]
    assert await store.schema_is_current()


async def test_a_read_only_store_reads_a_current_schema(store: Store, store_url: str) -> None:
    await store.add_domain("example.org")
    reader = await open_store(store_url, read_only=True)
    try:
        await reader.migrate()  # current: nothing to write
        assert await reader.schema_is_current()
        assert [d.name for d in await reader.list_domains()] == ["example.org"]
    finally:
        await reader.close()


async def test_a_second_store_on_the_same_database_sees_the_data(
    store: Store, store_url: str
) -> None:
    await store.add_domain("example.org")
    other = await open_store(store_url)
    try:
        await other.migrate()
        assert await other.get_domain("example.org") is not None
    finally:
        await other.close()


def _inspect_schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    return {
        "tables": set(inspector.get_table_names()),
        "target_indexes": inspector.get_indexes("alias_targets"),
    }


async def test_schema_has_the_tables_and_the_target_index(store: Store) -> None:
    async with store.engine.connect() as conn:  # type: ignore[attr-defined]
        schema = await conn.run_sync(_inspect_schema)
    assert {"domains", "accounts", "aliases", "alias_targets", "settings", "alembic_version"} <= (
        schema["tables"]
    )
    assert ["target"] in [index["column_names"] for index in schema["target_indexes"]]


def _schema_drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_exactly_the_declared_tables(store: Store) -> None:
    async with store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert await conn.run_sync(_schema_drift) == []
