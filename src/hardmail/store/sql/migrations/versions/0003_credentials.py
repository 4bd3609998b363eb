"""Credentials: account_credentials, recovery_codes, app_passwords, login_history.

Revision ID: 0003_credentials
Revises: 0002_queue
Create Date: 2024-06-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

revision = "0003_credentials"
down_revision: str | None = "0002_queue"
branch_labels: str | None = None
depends_on: str | None = None


def _key(length: int) -> TypeEngine[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    return sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _when(name: str, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["address"], ["accounts.address"], name=f"fk_{table}_address_accounts", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "account_credentials",
        sa.Column("address", _key(320), nullable=False),
        sa.Column("scram", sa.Text(), nullable=True),
        sa.Column("legacy_scheme", sa.String(32), nullable=True),
        sa.Column("must_change", sa.Boolean(), nullable=False),
        _when("password_changed_at"),
        sa.Column("totp_secret", sa.Text(), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("address", name="pk_account_credentials"),
        _account_fk("account_credentials"),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("address", _key(320), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("address", "digest", name="pk_recovery_codes"),
        _account_fk("recovery_codes"),
    )
    _create_app_passwords()
    _create_login_history()


def _create_app_passwords() -> None:
    op.create_table(
        "app_passwords",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("address", _key(320), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        _when("created_at", nullable=False),
        _when("expires_at"),
        _when("last_used_at"),
        sa.Column("last_used_ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_app_passwords"),
        sa.UniqueConstraint("address", "name", name="uq_app_passwords_address_name"),
        _account_fk("app_passwords"),
    )
    op.create_index("ix_app_passwords_address_digest", "app_passwords", ["address", "digest"])


def _create_login_history() -> None:
    op.create_table(
        "login_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _when("at", nullable=False),
        sa.Column("account", _key(320), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("mechanism", sa.String(32), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("tls_version", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_history"),
    )
    op.create_index("ix_login_history_account_at", "login_history", ["account", "at"])


def downgrade() -> None:
    op.drop_index("ix_login_history_account_at", table_name="login_history")
    op.drop_index("ix_app_passwords_address_digest", table_name="app_passwords")
    for table in ("login_history", "app_passwords", "recovery_codes", "account_credentials"):
        op.drop_table(table)
