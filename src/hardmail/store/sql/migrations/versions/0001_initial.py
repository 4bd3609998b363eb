"""Initial schema: domains, addresses, accounts, aliases, alias_targets, settings.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> TypeEngine[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _timestamp() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("name", _key(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _timestamp(),
        sa.PrimaryKeyConstraint("name", name="pk_domains"),
    )
    op.create_table(
        "addresses",
        sa.Column("address", _key(320), nullable=False),
        sa.Column("domain", _key(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _timestamp(),
        sa.PrimaryKeyConstraint("address", name="pk_addresses"),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.name"], name="fk_addresses_domain_domains", ondelete="RESTRICT"
        ),
        sa.CheckConstraint("kind IN ('account', 'alias')", name="ck_addresses_kind"),
    )
    op.create_index("ix_addresses_domain", "addresses", ["domain"])
    _create_accounts_and_aliases()
    op.create_table(
        "settings",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_settings"),
    )


def _create_accounts_and_aliases() -> None:
    op.create_table(
        "accounts",
        sa.Column("address", _key(320), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("address", name="pk_accounts"),
        sa.ForeignKeyConstraint(
            ["address"], ["addresses.address"], name="fk_accounts_address_addresses",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "aliases",
        sa.Column("source", _key(320), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_aliases"),
        sa.ForeignKeyConstraint(
            ["source"], ["addresses.address"], name="fk_aliases_source_addresses",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "alias_targets",
        sa.Column("source", _key(320), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("target", _key(320), nullable=False),
        sa.PrimaryKeyConstraint("source", "position", name="pk_alias_targets"),
        sa.ForeignKeyConstraint(
            ["source"], ["aliases.source"], name="fk_alias_targets_source_aliases",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_alias_targets_target", "alias_targets", ["target"])


def downgrade() -> None:
    for table in ("settings", "alias_targets", "aliases", "accounts", "addresses", "domains"):
        op.drop_table(table)
