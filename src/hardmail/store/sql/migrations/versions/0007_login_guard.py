"""Login guard: an index on access_known_sources.ip, for "has any account logged in from here"
(asked when a banned source connects or starts AUTH, see hardmail.policy.login_guard).

Revision ID: 0007_login_guard
Revises: 0007_account_freeze
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007_login_guard"
down_revision: str | None = "0007_account_freeze"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_access_known_sources_ip", "access_known_sources", ["ip"])


def downgrade() -> None:
    op.drop_index("ix_access_known_sources_ip", table_name="access_known_sources")
