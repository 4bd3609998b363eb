"""Access control: an index on access_bans.expires_at, for the server's snapshot of active bans.

Revision ID: 0006_access_ban_expiry
Revises: 0005_msgauth
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006_access_ban_expiry"
down_revision: str | None = "0005_msgauth"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_access_bans_expires_at", "access_bans", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_access_bans_expires_at", table_name="access_bans")
