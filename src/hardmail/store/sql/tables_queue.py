"""SQL tables of the outbound queue: ``queue_messages``, ``queue_recipients`` and ``queue_routes``.

They share ``tables.metadata`` so that migrations and the schema drift check see them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from hardmail.store.sql.tables import ADDRESS_LENGTH, DOMAIN_LENGTH, UtcDateTime, key_type, metadata

QUEUE_ID_LENGTH = 40

queue_messages = Table(
    "queue_messages",
    metadata,
    Column("queue_id", String(QUEUE_ID_LENGTH), primary_key=True),
    Column("sender", String(ADDRESS_LENGTH), nullable=False),
    Column("size", Integer, nullable=False),
    Column("origin_account", String(ADDRESS_LENGTH), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("held", Boolean, nullable=False),
    Column("delay_notified", Boolean, nullable=False),
    Column("claimed_by", String(200), nullable=True),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("ret", String(8), nullable=False),
    Column("envid", String(100), nullable=False),
)

queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column(
        "queue_id",
        String(QUEUE_ID_LENGTH),
        ForeignKey("queue_messages.queue_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("address", String(ADDRESS_LENGTH), nullable=False),
    Column("domain", String(DOMAIN_LENGTH), nullable=False),
    Column("state", String(16), nullable=False),
    Column("last_code", Integer, nullable=True),
    Column("last_text", Text, nullable=False),
    Column("remote_mta", String(DOMAIN_LENGTH), nullable=False),
    Column("updated_at", UtcDateTime, nullable=True),
    Column("notified", Boolean, nullable=False),
    Column("notify", String(40), nullable=False),
    Column("orcpt", String(500), nullable=False),
    PrimaryKeyConstraint("queue_id", "position"),
    CheckConstraint("state IN ('pending', 'delivered', 'failed', 'expired')", name="state"),
)

queue_routes = Table(
    "queue_routes",
    metadata,
    Column("pattern", key_type(DOMAIN_LENGTH), primary_key=True),
    Column("host", String(DOMAIN_LENGTH), nullable=False),
    Column("port", Integer, nullable=False),
    Column("tls", String(16), nullable=False),
    Column("username", Text, nullable=False),
    Column("password_encrypted", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("tls IN ('opportunistic', 'starttls', 'implicit', 'none')", name="tls"),
)
