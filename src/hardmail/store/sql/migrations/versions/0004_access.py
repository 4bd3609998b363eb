"""Access control: access_ranges, access_bans, access_auth_failures, access_known_sources, access_counters.

Revision ID: 0004_access
Revises: 0003_credentials
Create Date: 2024-06-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

revision = "0004_access"
down_revision: str | None = "0003_credentials"
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> TypeEngine[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "access_ranges",
        sa.Column("name", _key(200), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("lower_ip", sa.String(64), nullable=False),
        sa.Column("upper_ip", sa.String(64), nullable=False),
        sa.Column("permissions", sa.Text(), nullable=False),
        _when("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_access_ranges"),
    )
    op.create_table(
        "access_bans",
        sa.Column("subject", _key(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        _when("created_at"),
        _when("expires_at"),
        sa.Column("offences", sa.Integer(), nullable=False),
        sa.Column("by_admin", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_access_bans"),
    )
    _create_counting_tables()


def _create_counting_tables() -> None:
    op.create_table(
        "access_auth_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ip", _key(64), nullable=False),
        sa.Column("subnet", _key(64), nullable=False),
        sa.Column("account", _key(320), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_access_auth_failures"),
    )
    op.create_index("ix_access_auth_failures_ip_at", "access_auth_failures", ["ip", "at"])
    op.create_index("ix_access_auth_failures_subnet_at", "access_auth_failures", ["subnet", "at"])
    op.create_index("ix_access_auth_failures_account_at", "access_auth_failures", ["account", "at"])
    op.create_table(
        "access_known_sources",
        sa.Column("account", _key(320), nullable=False),
        sa.Column("ip", _key(64), nullable=False),
        sa.Column("last_success_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("account", "ip", name="pk_access_known_sources"),
    )
    op.create_table(
        "access_counters",
        sa.Column("key", _key(400), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name="pk_access_counters"),
    )
    op.create_index("ix_access_counters_window_start", "access_counters", ["window_start"])


def downgrade() -> None:
    for table in ("access_counters", "access_known_sources", "access_auth_failures", "access_bans",
                  "access_ranges"):
        op.drop_table(table)
