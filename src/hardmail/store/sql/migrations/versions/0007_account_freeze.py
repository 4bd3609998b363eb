"""Accounts: the freeze flag and reason, and the account_changes signal table.

Revision ID: 0007_account_freeze
Revises: 0006_access_ban_expiry
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_account_freeze"
down_revision: str | None = "0006_access_ban_expiry"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("frozen", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("frozen_reason", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "account_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
        sa.Column("account", sa.String(320).with_variant(postgresql.VARCHAR(320, collation="C"), "postgresql"),
                  nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("credential_id", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_account_changes"),
        # SQLite would hand out max(id) + 1, i.e. 1 again once a prune emptied the table: every
        # server process would take the new changes for ones it had seen.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_account_changes_at", "account_changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_account_changes_at", table_name="account_changes")
    op.drop_table("account_changes")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("frozen_reason")
        batch.drop_column("frozen")
