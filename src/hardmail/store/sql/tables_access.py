"""SQL tables of access control: ``access_ranges``, ``access_bans``, ``access_auth_failures``,
``access_known_sources`` and ``access_counters``.

They share ``tables.metadata`` so that migrations and the schema drift check see them.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from hardmail.store.sql.tables import ADDRESS_LENGTH, UtcDateTime, key_type, metadata

IP_LENGTH = 64  # an IPv6 address or network in text form fits easily
COUNTER_KEY_LENGTH = 400

access_ranges = Table(
    "access_ranges",
    metadata,
    Column("name", key_type(200), primary_key=True),
    Column("priority", Integer, nullable=False),
    Column("lower_ip", String(IP_LENGTH), nullable=False),
    Column("upper_ip", String(IP_LENGTH), nullable=False),
    Column("permissions", Text, nullable=False),  # comma-separated tokens, see sql/access_backend.py
    Column("expires_at", UtcDateTime, nullable=True),
)

access_bans = Table(
    "access_bans",
    metadata,
    Column("subject", key_type(IP_LENGTH), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("offences", Integer, nullable=False),
    Column("by_admin", Boolean, nullable=False),
    Index("ix_access_bans_expires_at", "expires_at"),  # the server's active-ban snapshot
)

access_auth_failures = Table(
    "access_auth_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("ip", key_type(IP_LENGTH), nullable=False),
    Column("subnet", key_type(IP_LENGTH), nullable=False),
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Index("ix_access_auth_failures_ip_at", "ip", "at"),
    Index("ix_access_auth_failures_subnet_at", "subnet", "at"),
    Index("ix_access_auth_failures_account_at", "account", "at"),
)

access_known_sources = Table(
    "access_known_sources",
    metadata,
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Column("ip", key_type(IP_LENGTH), nullable=False),
    Column("last_success_at", Float, nullable=False),
    PrimaryKeyConstraint("account", "ip"),
    Index("ix_access_known_sources_ip", "ip"),  # has_logged_in_from, for banned sources
)

access_counters = Table(
    "access_counters",
    metadata,
    Column("key", key_type(COUNTER_KEY_LENGTH), nullable=False),
    Column("window_start", Integer, nullable=False),
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("key", "window_start"),
    Index("ix_access_counters_window_start", "window_start"),
)
