"""SQL tables of the mailbox index: ``mailbox_accounts`` (usage, limits, last UIDVALIDITY),
``mailbox_folders``, ``mailbox_messages`` (one row per message, PK (folder_id, uid), unique base
name per folder), ``mailbox_vanished`` (tombstones of expunged UIDs with their MODSEQ, for
QRESYNC), ``mailbox_subscriptions`` and ``mailbox_changes`` (the cross-process change feed).

Times of messages (INTERNALDATE) are whole seconds since the epoch, so that a 100,000-message
snapshot reads integers rather than parsing timestamps. They share ``tables.metadata``.
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

FOLDER_NAME_LENGTH = 1024  # UTF-8 IMAP name; the directory name is limited to 250 bytes anyway
FILE_NAME_LENGTH = 255

mailbox_accounts = Table(
    "mailbox_accounts",
    metadata,
    Column("account", key_type(ADDRESS_LENGTH), primary_key=True),
    Column("storage_used", BigInteger, nullable=False),
    Column("messages_used", BigInteger, nullable=False),
    Column("custom_limits", Boolean, nullable=False),
    Column("storage_limit", BigInteger, nullable=True),
    Column("messages_limit", BigInteger, nullable=True),
    Column("last_uidvalidity", BigInteger, nullable=False),
)

mailbox_folders = Table(
    "mailbox_folders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", key_type(ADDRESS_LENGTH),
           ForeignKey("mailbox_accounts.account", ondelete="CASCADE"), nullable=False),
    Column("name", key_type(FOLDER_NAME_LENGTH), nullable=False),
    Column("special_use", String(32), nullable=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False),
    Column("highestmodseq", BigInteger, nullable=False),
    Column("messages", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("unseen", BigInteger, nullable=False),
    Column("deleted", BigInteger, nullable=False),
    Column("first_recent_uid", BigInteger, nullable=False),
    Column("new_mtime_ns", BigInteger, nullable=False),
    Column("cur_mtime_ns", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("account", "name"),
    sqlite_autoincrement=True,  # a deleted folder's id is never reused
)

mailbox_messages = Table(
    "mailbox_messages",
    metadata,
    Column("folder_id", Integer, ForeignKey("mailbox_folders.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("name", key_type(FILE_NAME_LENGTH), nullable=False),
    Column("flags", Text, nullable=False),  # space-separated, sorted
    Column("modseq", BigInteger, nullable=False),
    Column("internaldate", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("in_new", Boolean, nullable=False),
    PrimaryKeyConstraint("folder_id", "uid"),
    UniqueConstraint("folder_id", "name"),
    Index("ix_mailbox_messages_folder_id_modseq", "folder_id", "modseq"),
)

mailbox_vanished = Table(
    "mailbox_vanished",
    metadata,
    Column("folder_id", Integer, ForeignKey("mailbox_folders.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("modseq", BigInteger, nullable=False),
    PrimaryKeyConstraint("folder_id", "uid"),
    Index("ix_mailbox_vanished_folder_id_modseq", "folder_id", "modseq"),
)

mailbox_subscriptions = Table(
    "mailbox_subscriptions",
    metadata,
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Column("name", key_type(FOLDER_NAME_LENGTH), nullable=False),
    PrimaryKeyConstraint("account", "name"),
)

mailbox_changes = Table(
    "mailbox_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", key_type(ADDRESS_LENGTH), nullable=False),
    Column("folder", key_type(FOLDER_NAME_LENGTH), nullable=False),
    Column("at", UtcDateTime, nullable=False, index=True),
    sqlite_autoincrement=True,  # ids never reused, also once a prune emptied the table
)
