"""The SQL schema as SQLAlchemy Core tables (the newest version; migrations/ builds it step by step).

Every local address, of an account or of an alias (``@domain`` for a catch-all), has one row in
``addresses``: its primary key makes an account and an alias of the same address impossible, and
its foreign key to ``domains`` keeps a domain from being removed while it is in use. ``accounts``
and ``aliases`` extend that row; alias targets live in ``alias_targets``, indexed by target.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

DOMAIN_LENGTH = 255  # RFC 5321 4.5.3.1.2
ADDRESS_LENGTH = 320  # generous: RFC 5321 4.5.3.1.3 limits a path to 256 octets

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def key_type(length: int) -> TypeEngine[str]:
    """A lookup key: compared and sorted byte by byte on every backend (PostgreSQL: COLLATE "C")."""
    return String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use a timezone-aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


domains = Table(
    "domains",
    metadata,
    Column("name", key_type(DOMAIN_LENGTH), primary_key=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", UtcDateTime, nullable=False),
)

addresses = Table(
    "addresses",
    metadata,
    Column("address", key_type(ADDRESS_LENGTH), primary_key=True),
    Column(
        "domain",
        key_type(DOMAIN_LENGTH),
        ForeignKey("domains.name", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("kind IN ('account', 'alias')", name="kind"),
)

accounts = Table(
    "accounts",
    metadata,
    Column(
        "address",
        key_type(ADDRESS_LENGTH),
        ForeignKey("addresses.address", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("password_hash", Text, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("display_name", Text, nullable=False, default=""),
    Column("frozen", Boolean, nullable=False, default=False),
    Column("frozen_reason", Text, nullable=False, default=""),
)

# The cross-process "account changed" signal: one row per disable, freeze, password change,
# app-password revocation or removal, written in the change's own transaction. No foreign key: the
# row of a removed account must outlive it. Server processes poll it by id; old rows are pruned by time.
account_changes = Table(
    "account_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("credential_id", Integer, nullable=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    sqlite_autoincrement=True,  # ids never reused, even once a prune emptied the table
)

aliases = Table(
    "aliases",
    metadata,
    Column(
        "source",
        key_type(ADDRESS_LENGTH),
        ForeignKey("addresses.address", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("enabled", Boolean, nullable=False, default=True),
)

alias_targets = Table(
    "alias_targets",
    metadata,
    Column(
        "source",
        key_type(ADDRESS_LENGTH),
        ForeignKey("aliases.source", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("target", key_type(ADDRESS_LENGTH), nullable=False),
    PrimaryKeyConstraint("source", "position"),
    Index("ix_alias_targets_target", "target"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("value", Text, nullable=False),
)

# Feature tables share ``metadata``; importing them here makes every user of ``metadata`` see them.
import hardmail.store.sql.tables_access  # noqa: E402
import hardmail.store.sql.tables_credentials  # noqa: E402
import hardmail.store.sql.tables_mailbox  # noqa: E402
import hardmail.store.sql.tables_msgauth  # noqa: E402
import hardmail.store.sql.tables_queue  # noqa: E402
import hardmail.store.sql.tables_security  # noqa: E402, F401
