"""Mailbox index: mailbox_accounts, mailbox_folders, mailbox_messages, mailbox_vanished,
mailbox_subscriptions, mailbox_changes.

It merged the two 0007 branches until the history was made linear (issue 13).

Revision ID: 0008_mailbox_index
Revises: 0007_login_guard
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008_mailbox_index"
down_revision: str | None = "0007_login_guard"
branch_labels: str | None = None
depends_on: str | None = None


def _key(name: str, length: int) -> sa.Column[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    return sa.Column(name, sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql"),
                     nullable=False)


def _big(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "mailbox_accounts",
        _key("account", 320), _big("storage_used"), _big("messages_used"),
        sa.Column("custom_limits", sa.Boolean(), nullable=False),
        _big("storage_limit", True), _big("messages_limit", True), _big("last_uidvalidity"),
        sa.PrimaryKeyConstraint("account", name="pk_mailbox_accounts"),
    )
    op.create_table(
        "mailbox_folders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _key("account", 320), _key("name", 1024),
        sa.Column("special_use", sa.String(32), nullable=True),
        *[_big(name) for name in ("uidvalidity", "uidnext", "highestmodseq", "messages", "size", "unseen",
                                  "deleted", "first_recent_uid", "new_mtime_ns", "cur_mtime_ns")],
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["mailbox_accounts.account"], ondelete="CASCADE",
                                name="fk_mailbox_folders_account_mailbox_accounts"),
        sa.PrimaryKeyConstraint("id", name="pk_mailbox_folders"),
        sa.UniqueConstraint("account", "name", name="uq_mailbox_folders_account"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "mailbox_messages",
        sa.Column("folder_id", sa.Integer(), nullable=False), _big("uid"), _key("name", 255),
        sa.Column("flags", sa.Text(), nullable=False), _big("modseq"), _big("internaldate"), _big("size"),
        sa.Column("in_new", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["folder_id"], ["mailbox_folders.id"], ondelete="CASCADE",
                                name="fk_mailbox_messages_folder_id_mailbox_folders"),
        sa.PrimaryKeyConstraint("folder_id", "uid", name="pk_mailbox_messages"),
        sa.UniqueConstraint("folder_id", "name", name="uq_mailbox_messages_folder_id"),
    )
    op.create_index("ix_mailbox_messages_folder_id_modseq", "mailbox_messages", ["folder_id", "modseq"])
    op.create_table(
        "mailbox_vanished",
        sa.Column("folder_id", sa.Integer(), nullable=False), _big("uid"), _big("modseq"),
        sa.ForeignKeyConstraint(["folder_id"], ["mailbox_folders.id"], ondelete="CASCADE",
                                name="fk_mailbox_vanished_folder_id_mailbox_folders"),
        sa.PrimaryKeyConstraint("folder_id", "uid", name="pk_mailbox_vanished"),
    )
    op.create_index("ix_mailbox_vanished_folder_id_modseq", "mailbox_vanished", ["folder_id", "modseq"])
    op.create_table(
        "mailbox_subscriptions",
        _key("account", 320), _key("name", 1024),
        sa.PrimaryKeyConstraint("account", "name", name="pk_mailbox_subscriptions"),
    )
    op.create_table(
        "mailbox_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _key("account", 320), _key("folder", 1024),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mailbox_changes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mailbox_changes_at", "mailbox_changes", ["at"])


def downgrade() -> None:
    op.drop_index("ix_mailbox_changes_at", table_name="mailbox_changes")
    op.drop_table("mailbox_changes")
    op.drop_table("mailbox_subscriptions")
    op.drop_index("ix_mailbox_vanished_folder_id_modseq", table_name="mailbox_vanished")
    op.drop_table("mailbox_vanished")
    op.drop_index("ix_mailbox_messages_folder_id_modseq", table_name="mailbox_messages")
    op.drop_table("mailbox_messages")
    op.drop_table("mailbox_folders")
    op.drop_table("mailbox_accounts")
