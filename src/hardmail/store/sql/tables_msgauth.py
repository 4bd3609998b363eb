"""SQL tables of greylisting: ``greylist_triplets`` and ``greylist_networks`` (shared ``metadata``)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, String, Table

from hardmail.store.sql.tables import UtcDateTime, key_type, metadata

TRIPLET_KEY_LENGTH = 700  # network (<= 49) + sender (<= 320) + recipient (<= 320) + separators
NETWORK_LENGTH = 49

greylist_triplets = Table(
    "greylist_triplets",
    metadata,
    Column("key", key_type(TRIPLET_KEY_LENGTH), primary_key=True),
    Column("network", String(NETWORK_LENGTH), nullable=False, index=True),
    Column("first_seen", UtcDateTime, nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("confirmed", Boolean, nullable=False),
    Column("passes", Integer, nullable=False),
)

greylist_networks = Table(
    "greylist_networks",
    metadata,
    Column("network", String(NETWORK_LENGTH), primary_key=True),
    Column("whitelisted_until", UtcDateTime, nullable=False, index=True),
)
