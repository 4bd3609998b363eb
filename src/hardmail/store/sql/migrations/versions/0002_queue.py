"""Outbound queue: queue_messages, queue_recipients, queue_routes.

Revision ID: 0002_queue
Revises: 0001
Create Date: 2024-06-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

revision = "0002_queue"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> TypeEngine[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("queue_id", sa.String(40), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("origin_account", sa.String(320), nullable=True),
        _when("created_at"),
        _when("next_attempt_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("delay_notified", sa.Boolean(), nullable=False),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        _when("claimed_until", nullable=True),
        sa.Column("ret", sa.String(8), nullable=False),
        sa.Column("envid", sa.String(100), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", name="pk_queue_messages"),
    )
    op.create_index("ix_queue_messages_next_attempt_at", "queue_messages", ["next_attempt_at"])
    _create_recipients()
    _create_routes()


def _create_recipients() -> None:
    op.create_table(
        "queue_recipients",
        sa.Column("queue_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_text", sa.Text(), nullable=False),
        sa.Column("remote_mta", sa.String(255), nullable=False),
        _when("updated_at", nullable=True),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("notify", sa.String(40), nullable=False),
        sa.Column("orcpt", sa.String(500), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "position", name="pk_queue_recipients"),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["queue_messages.queue_id"], name="fk_queue_recipients_queue_id_queue_messages",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed', 'expired')", name="ck_queue_recipients_state"
        ),
    )


def _create_routes() -> None:
    op.create_table(
        "queue_routes",
        sa.Column("pattern", _key(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("tls", sa.String(16), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("pattern", name="pk_queue_routes"),
        sa.CheckConstraint(
            "tls IN ('opportunistic', 'starttls', 'implicit', 'none')", name="ck_queue_routes_tls"
        ),
    )


def downgrade() -> None:
    for table in ("queue_routes", "queue_recipients", "queue_messages"):
        op.drop_table(table)
