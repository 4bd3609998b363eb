"""SQL tables of the security features: ``audit_runs``, ``sign_in_sources`` and ``notice_preferences``.

They share ``tables.metadata`` so that migrations, the schema drift check and backups see them.
The audit runs are the server's own history and name no account; the sign-in sources and the
notice preferences belong to an account and go with it (ON DELETE CASCADE).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from hardmail.store.sql.tables import ADDRESS_LENGTH, UtcDateTime, key_type, metadata

IP_LENGTH = 64  # an IPv6 address in text form fits easily
AUDIT_TARGET_LENGTH = 1000  # "own", or the --target list as the admin gave it


def _account_column(**kwargs: object) -> Column[str]:
    return Column(
        "account",
        key_type(ADDRESS_LENGTH),
        ForeignKey("accounts.address", ondelete="CASCADE"),
        nullable=False,
        **kwargs,  # type: ignore[arg-type]
    )


audit_runs = Table(
    "audit_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=False),
    Column("target", key_type(AUDIT_TARGET_LENGTH), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("worst", String(16), nullable=False),
    Column("findings_json", Text, nullable=False),
    Index("ix_audit_runs_target_started_at", "target", "started_at"),
    sqlite_autoincrement=True,  # ids never reused, also once a prune removed the newest runs
)

sign_in_sources = Table(
    "sign_in_sources",
    metadata,
    _account_column(),
    Column("ip", key_type(IP_LENGTH), nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("account", "ip"),
    Index("ix_sign_in_sources_last_seen_at", "last_seen_at"),  # prune_sign_in_sources
)

notice_preferences = Table(
    "notice_preferences",
    metadata,
    _account_column(primary_key=True),
    Column("weekly_digest", Boolean, nullable=False, default=False),
)
