"""Security: audit_runs, sign_in_sources, notice_preferences; sign-in sources seeded from what is known.

The sources every account already signed in from (successful logins in login_history, and
access_known_sources) are recorded as known, so that turning new-sign-in notices on for an existing
server does not notify every user at their next login; the setting ``notices.feed_cursor`` is set
to the newest login-history id, so that the notice feed starts after the history that existed
before. An empty database gets no row at all (a logical restore creates the schema, then imports
the archive's rows): a missing cursor means 0.

Revision ID: 0009_security
Revises: 0008_mailbox_index
Create Date: 2026-12-10
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

revision = "0009_security"
down_revision: str | None = "0008_mailbox_index"
branch_labels: str | None = None
depends_on: str | None = None

FEED_CURSOR_KEY = "notices.feed_cursor"  # a copy of security_backend's: a migration must not change


def _key(name: str, length: int, primary_key: bool = False) -> sa.Column[str]:
    # A copy, not an import, of tables.key_type: a migration must not change when tables.py does.
    kind = sa.String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")
    return sa.Column(name, kind, nullable=False, primary_key=primary_key)


def _when(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _account_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["account"], ["accounts.address"], name=f"fk_{table}_account_accounts",
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _when("started_at"), _when("finished_at"), _key("target", 1000),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("worst", sa.String(16), nullable=False),
        sa.Column("findings_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_runs"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_runs_target_started_at", "audit_runs", ["target", "started_at"])
    op.create_table(
        "sign_in_sources",
        _key("account", 320), _key("ip", 64), _when("first_seen_at"), _when("last_seen_at"),
        sa.PrimaryKeyConstraint("account", "ip", name="pk_sign_in_sources"),
        _account_fk("sign_in_sources"),
    )
    op.create_index("ix_sign_in_sources_last_seen_at", "sign_in_sources", ["last_seen_at"])
    op.create_table(
        "notice_preferences",
        _key("account", 320), sa.Column("weekly_digest", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_notice_preferences"),
        _account_fk("notice_preferences"),
    )
    _seed(op.get_bind())


# The tables as they are at this revision (not imported from tables*.py, which move on).
_accounts = sa.table("accounts", sa.column("address", sa.String))
_history = sa.table("login_history", sa.column("id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)),
                    sa.column("account", sa.String), sa.column("kind", sa.String), sa.column("result", sa.String),
                    sa.column("client_ip", sa.String))
_known = sa.table("access_known_sources", sa.column("account", sa.String), sa.column("ip", sa.String),
                  sa.column("last_success_at", sa.Float))
_sources = sa.table("sign_in_sources", sa.column("account", sa.String), sa.column("ip", sa.String),
                    sa.column("first_seen_at", sa.DateTime(timezone=True)),
                    sa.column("last_seen_at", sa.DateTime(timezone=True)))
_settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))


def _seed(connection: Connection) -> None:
    """Record the known sources of existing accounts and the feed cursor (nothing when empty)."""
    sources = _known_sources(connection)
    if sources:
        utc = connection.dialect.name == "sqlite"  # SQLite keeps timestamps naive, in UTC
        rows = [{"account": account, "ip": ip, "first_seen_at": _stored(at, utc), "last_seen_at": _stored(at, utc)}
                for (account, ip), at in sorted(sources.items())]
        connection.execute(sa.insert(_sources), rows)
    newest = connection.scalar(sa.select(sa.func.max(_history.c.id)))
    if newest:
        connection.execute(sa.insert(_settings).values(key=FEED_CURSOR_KEY, value=str(newest)))


def _known_sources(connection: Connection) -> dict[tuple[str, str], datetime]:
    """(account, ip) of existing accounts: when each was last seen, by either table."""
    existing = sa.select(_accounts.c.address)
    history = (sa.select(_history.c.account, _history.c.client_ip, sa.func.max(_history.c.at))
               .where(_history.c.kind == "login", _history.c.result == "success", _history.c.client_ip != "",
                      _history.c.account.in_(existing))
               .group_by(_history.c.account, _history.c.client_ip))
    found: dict[tuple[str, str], datetime] = {}
    for account, ip, at in connection.execute(history):
        found[(account, ip)] = _aware(at)
    known = sa.select(_known.c.account, _known.c.ip, _known.c.last_success_at).where(
        _known.c.account.in_(existing), _known.c.ip != "")
    for account, ip, seconds in connection.execute(known):
        at = datetime.fromtimestamp(seconds, UTC)
        found[(account, ip)] = max(at, found.get((account, ip), at))
    return found


def _aware(value: datetime | str) -> datetime:
    """A timestamp as read back (SQLite: naive UTC, or text through an untyped max())."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stored(value: datetime, naive_utc: bool) -> datetime:
    return value.replace(tzinfo=None) if naive_utc else value


def downgrade() -> None:
    op.execute(sa.delete(_settings).where(_settings.c.key == FEED_CURSOR_KEY))
    op.drop_table("notice_preferences")
    op.drop_index("ix_sign_in_sources_last_seen_at", table_name="sign_in_sources")
    op.drop_table("sign_in_sources")
    op.drop_index("ix_audit_runs_target_started_at", table_name="audit_runs")
    op.drop_table("audit_runs")
