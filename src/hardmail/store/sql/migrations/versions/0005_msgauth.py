"""Greylisting: greylist_triplets, greylist_networks.

Revision ID: 0005_msgauth
Revises: 0004_access
Create Date: 2024-06-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_msgauth"
down_revision: str | None = "0004_access"
branch_labels: str | None = None
depends_on: str | None = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "greylist_triplets",
        sa.Column("key", sa.String(700).with_variant(postgresql.VARCHAR(700, collation="C"), "postgresql"),
                  nullable=False),
        sa.Column("network", sa.String(49), nullable=False),
        _when("first_seen"),
        _when("last_seen"),
        _when("expires_at"),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("passes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_greylist_triplets"),
    )
    op.create_index("ix_greylist_triplets_network", "greylist_triplets", ["network"])
    op.create_index("ix_greylist_triplets_expires_at", "greylist_triplets", ["expires_at"])
    op.create_table(
        "greylist_networks",
        sa.Column("network", sa.String(49), nullable=False),
        _when("whitelisted_until"),
        sa.PrimaryKeyConstraint("network", name="pk_greylist_networks"),
    )
    op.create_index("ix_greylist_networks_whitelisted_until", "greylist_networks", ["whitelisted_until"])


def downgrade() -> None:
    op.drop_table("greylist_networks")
    op.drop_table("greylist_triplets")
