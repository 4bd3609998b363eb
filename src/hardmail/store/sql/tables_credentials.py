"""SQL tables of credentials: ``account_credentials``, ``recovery_codes``, ``app_passwords`` and
``login_history``.

They share ``tables.metadata`` so that migrations and the schema drift check see them. The first
three belong to an account and go with it (ON DELETE CASCADE); the login history is an audit
trail and outlives the account it names.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from hardmail.store.sql.tables import ADDRESS_LENGTH, UtcDateTime, key_type, metadata

DIGEST_LENGTH = 64  # hex SHA-256
APP_PASSWORD_NAME_LENGTH = 100


def _account_column(**kwargs: object) -> Column[str]:
    return Column(
        "address",
        key_type(ADDRESS_LENGTH),
        ForeignKey("accounts.address", ondelete="CASCADE"),
        nullable=False,
        **kwargs,  # type: ignore[arg-type]
    )


account_credentials = Table(
    "account_credentials",
    metadata,
    _account_column(primary_key=True),
    Column("scram", Text, nullable=True),  # ScramSecrets.to_text(): iterations$salt$StoredKey$ServerKey
    Column("legacy_scheme", String(32), nullable=True),
    Column("must_change", Boolean, nullable=False, default=False),
    Column("password_changed_at", UtcDateTime, nullable=True),
    Column("totp_secret", Text, nullable=True),  # Fernet token made with the server key
    Column("totp_last_step", BigInteger, nullable=True),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    _account_column(),
    Column("digest", String(DIGEST_LENGTH), nullable=False),
    PrimaryKeyConstraint("address", "digest"),
)

app_passwords = Table(
    "app_passwords",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _account_column(),
    Column("name", String(APP_PASSWORD_NAME_LENGTH), nullable=False),
    Column("digest", String(DIGEST_LENGTH), nullable=False),
    Column("scopes", String(64), nullable=False),  # comma-separated, sorted: "imap,smtp"
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("last_used_ip", String(64), nullable=True),
    UniqueConstraint("address", "name", name="uq_app_passwords_address_name"),
    Index("ix_app_passwords_address_digest", "address", "digest"),
)

login_history = Table(
    "login_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("result", String(16), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("mechanism", String(32), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("tls_version", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_login_history_account_at", "account", "at"),
)
