"""Databases as earlier hardmail versions left them, for the migration tests.

:func:`build_database_at` runs the migrations up to a revision, fills the database with rows valid
at that revision (plain INSERTs of the columns as they were then, one set per revision that added
tables or columns) and stamps ``alembic_version`` as that version did: one row per head of the old
branched history (``BRANCHED_PARENTS``), or the one revision of the linear chain. :func:`check_rows`
reads those rows back through the store API after an upgrade; :func:`remove_rows` deletes them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from hardmail.policy.access import Direction
from hardmail.store.ports import Store
from hardmail.store.sql.engine import create_engine_for
from hardmail.store.sql.migrate import BRANCHED_PARENTS, alembic_config, revision_chain

CHAIN = revision_chain()
EARLIER = CHAIN[:-1]  # every revision a database can be upgraded from
LAST_BRANCHED = tuple(BRANCHED_PARENTS)[-1]  # the newest revision a release stamped the branched way
Layout = Literal["branched", "linear"]
WHEN = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
LATER = WHEN + timedelta(days=3650)  # bans and whitelists that are still active when the test runs
ALICE, BOB, TEAM, CATCH_ALL = "alice@old.example", "bob@old.example", "team@old.example", "@second.example"
IP = "192.0.2.7"
BOB_IP = "198.51.100.20"
TRIPLET = "192.0.2.0/24|sender@remote.example|alice@old.example"
ALICE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2g"


def branched_heads(revision: str) -> list[str]:
    """The alembic_version rows a branched-era release left after applying CHAIN up to ``revision``."""
    applied = CHAIN[:CHAIN.index(revision) + 1]
    parents = {parent for name in applied for parent in BRANCHED_PARENTS[name]}
    return sorted(set(applied) - parents)


def _insert(connection: Connection, table: str, *rows: dict[str, Any]) -> None:
    """INSERT ``rows`` into ``table``, binding datetimes and booleans by their types."""
    def column_type(value: Any) -> Any:
        return sa.DateTime(timezone=True) if isinstance(value, datetime) else sa.Boolean() \
            if isinstance(value, bool) else None
    columns = [sa.column(name, column_type(value)) for name, value in rows[0].items()]
    connection.execute(sa.insert(sa.table(table, *columns)), list(rows))


def _fill_0001(c: Connection) -> None:
    _insert(c, "domains", {"name": "old.example", "enabled": True, "created_at": WHEN},
            {"name": "second.example", "enabled": False, "created_at": WHEN})
    _insert(c, "addresses", *({"address": a, "domain": a.rpartition("@")[2], "kind": k, "created_at": WHEN}
                              for a, k in ((ALICE, "account"), (BOB, "account"), (TEAM, "alias"),
                                           (CATCH_ALL, "alias"))))
    _insert(c, "accounts", {"address": ALICE, "password_hash": ALICE_HASH, "enabled": True, "display_name": "Alice"},
            {"address": BOB, "password_hash": "$argon2id$bob", "enabled": False, "display_name": ""})
    _insert(c, "aliases", {"source": TEAM, "enabled": True}, {"source": CATCH_ALL, "enabled": True})
    _insert(c, "alias_targets", {"source": TEAM, "position": 0, "target": ALICE},
            {"source": TEAM, "position": 1, "target": BOB}, {"source": CATCH_ALL, "position": 0, "target": ALICE})
    _insert(c, "settings", {"key": "old.setting", "value": "kept"})


def _fill_0002(c: Connection) -> None:
    _insert(c, "queue_messages", {
        "queue_id": "Q1", "sender": ALICE, "size": 1234, "origin_account": ALICE, "created_at": WHEN,
        "next_attempt_at": WHEN + timedelta(hours=1), "attempts": 2, "last_error": "451 try later", "held": False,
        "delay_notified": True, "claimed_by": None, "claimed_until": None, "ret": "HDRS", "envid": "env-1"})
    recipient = {"queue_id": "Q1", "position": 0, "address": "carol@remote.example", "domain": "remote.example",
                 "state": "pending", "last_code": 451, "last_text": "try later", "remote_mta": "mx.remote.example",
                 "updated_at": WHEN, "notified": False, "notify": "FAILURE,DELAY",
                 "orcpt": "rfc822;carol@remote.example"}
    _insert(c, "queue_recipients", recipient, {**recipient, "position": 1, "address": "dave@remote.example",
                                               "state": "delivered", "last_code": 250, "last_text": "ok",
                                               "notified": True, "notify": "", "orcpt": ""})
    _insert(c, "queue_routes", {"pattern": "*.remote.example", "host": "smarthost.example", "port": 587,
                                "tls": "starttls", "username": "relay", "password_encrypted": "gAAAA-token",
                                "created_at": WHEN})


def _fill_0003(c: Connection) -> None:
    _insert(c, "account_credentials", {
        "address": ALICE, "scram": None, "legacy_scheme": "bcrypt", "must_change": True,
        "password_changed_at": WHEN, "totp_secret": "gAAAA-totp", "totp_last_step": 57_000_000})
    _insert(c, "recovery_codes", {"address": ALICE, "digest": "a" * 64}, {"address": ALICE, "digest": "b" * 64})
    _insert(c, "app_passwords", {"address": ALICE, "name": "phone", "digest": "c" * 64, "scopes": "imap,smtp",
                                 "created_at": WHEN, "expires_at": None, "last_used_at": WHEN, "last_used_ip": IP})
    _insert(c, "login_history", {"at": WHEN, "account": ALICE, "kind": "login", "result": "success",
                                 "protocol": "imap", "mechanism": "PLAIN", "client_ip": IP,
                                 "tls_version": "TLSv1.3", "detail": ""})


def _fill_0004(c: Connection) -> None:
    _insert(c, "access_ranges", {"name": "office", "priority": 10, "lower_ip": "192.0.2.0", "upper_ip": "192.0.2.255",
                                 "permissions": "imap,smtp,deliver:local-local,auth:external-external,tls-for-auth",
                                 "expires_at": None})
    _insert(c, "access_bans", {"subject": "198.51.100.9", "kind": "ip", "reason": "too many failed logins",
                               "created_at": WHEN, "expires_at": LATER, "offences": 2, "by_admin": False})
    _insert(c, "access_auth_failures", {"at": WHEN.timestamp(), "ip": "198.51.100.9", "subnet": "198.51.100.0/24",
                                        "account": ALICE})
    _insert(c, "access_known_sources", {"account": ALICE, "ip": IP, "last_success_at": WHEN.timestamp()})
    _insert(c, "access_counters", {"key": f"conn:{IP}", "window_start": 1_717_243_200, "count": 3})


def _fill_0005(c: Connection) -> None:
    _insert(c, "greylist_triplets", {"key": TRIPLET, "network": "192.0.2.0/24", "first_seen": WHEN, "last_seen": WHEN,
                                     "expires_at": LATER, "confirmed": True, "passes": 3})
    _insert(c, "greylist_networks", {"network": "198.51.100.0/24", "whitelisted_until": LATER})


def _fill_0007_account_freeze(c: Connection) -> None:
    accounts = sa.table("accounts", sa.column("address"), sa.column("frozen", sa.Boolean()), sa.column("frozen_reason"))
    c.execute(sa.update(accounts).where(accounts.c.address == BOB).values(frozen=True, frozen_reason="compromised"))
    _insert(c, "account_changes", {"account": BOB, "kind": "frozen", "credential_id": None, "at": WHEN})


def _fill_0009_security(c: Connection) -> None:
    _insert(c, "audit_runs", {"started_at": WHEN, "finished_at": WHEN + timedelta(seconds=40), "target": "own",
                              "trigger": "scheduled", "score": 88, "worst": "medium", "findings_json": "[]"})
    _insert(c, "sign_in_sources", {"account": BOB, "ip": BOB_IP, "first_seen_at": WHEN, "last_seen_at": WHEN})
    _insert(c, "notice_preferences", {"account": ALICE, "weekly_digest": True},
            {"account": BOB, "weekly_digest": False})


# The rows each revision's tables and columns can hold (revisions that only add an index have none).
FILLERS: dict[str, Callable[[Connection], None]] = {
    "0001": _fill_0001, "0002_queue": _fill_0002, "0003_credentials": _fill_0003, "0004_access": _fill_0004,
    "0005_msgauth": _fill_0005, "0007_account_freeze": _fill_0007_account_freeze,
    "0009_security": _fill_0009_security,
}


def _build(connection: Connection, revision: str, layout: Layout, fill: bool) -> None:
    command.upgrade(alembic_config(connection), revision)
    if fill:
        for name in CHAIN[:CHAIN.index(revision) + 1]:
            if name in FILLERS:
                FILLERS[name](connection)
    if layout == "branched":
        versions = sa.table("alembic_version", sa.column("version_num"))
        connection.execute(sa.delete(versions))
        connection.execute(sa.insert(versions), [{"version_num": head} for head in branched_heads(revision)])


async def build_database_at(url: str, revision: str, layout: Layout = "branched", fill: bool = True) -> None:
    """Make the database at ``url`` as the release at ``revision`` left it (see the module text)."""
    engine = create_engine_for(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: _build(sync, revision, layout, fill))
    finally:
        await engine.dispose()


async def stamped_rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return sorted(str(v) for v in (await connection.execute(sa.text("SELECT version_num FROM alembic_version")))
                      .scalars())


# --- reading the rows back through the store ------------------------------------------------


async def _check_0001(store: Store) -> None:
    assert [(d.name, d.enabled, d.created_at) for d in await store.list_domains()] == [
        ("old.example", True, WHEN), ("second.example", False, WHEN)]
    alice = await store.get_account(ALICE)
    assert alice is not None
    assert (alice.password_hash, alice.enabled, alice.display_name, alice.created_at) == (
        ALICE_HASH, True, "Alice", WHEN)
    bob = await store.get_account(BOB)
    assert bob is not None and not bob.enabled
    assert [(a.source, a.targets, a.enabled) for a in await store.list_aliases()] == [
        (CATCH_ALL, (ALICE,), True), (TEAM, (ALICE, BOB), True)]
    assert [a.source for a in await store.aliases_targeting(BOB)] == [TEAM]
    assert await store.get_setting("old.setting") == "kept"


async def _check_0002(store: Store) -> None:
    entry = await store.queue.get_queued("Q1")
    assert entry is not None
    assert (entry.sender, entry.size, entry.attempts, entry.last_error, entry.delay_notified, entry.ret,
            entry.envid, entry.created_at) == (ALICE, 1234, 2, "451 try later", True, "HDRS", "env-1", WHEN.timestamp())
    assert [(r.address, r.state, r.last_code, r.notify, r.orcpt) for r in entry.recipients] == [
        ("carol@remote.example", "pending", 451, ("FAILURE", "DELAY"), "rfc822;carol@remote.example"),
        ("dave@remote.example", "delivered", 250, (), "")]
    assert [(r.pattern, r.host, r.port, r.tls, r.username) for r in await store.queue.list_routes()] == [
        ("*.remote.example", "smarthost.example", 587, "starttls", "relay")]


async def _check_0003(store: Store) -> None:
    state = await store.credentials.get_credentials(ALICE)
    assert state is not None
    assert (state.legacy_scheme, state.must_change, state.password_changed_at, state.totp_secret,
            state.totp_last_step) == ("bcrypt", True, WHEN, "gAAAA-totp", 57_000_000)
    assert await store.credentials.count_recovery_codes(ALICE) == 2
    [phone] = await store.credentials.list_app_passwords(ALICE)
    assert (phone.name, phone.scopes, phone.last_used_ip) == ("phone", frozenset({"imap", "smtp"}), IP)
    assert await store.credentials.find_app_password(ALICE, "c" * 64) is not None
    assert [(e.kind, e.result, e.client_ip) for e in await store.credentials.list_login_events(ALICE)] == [
        ("login", "success", IP)]


async def _check_0004(store: Store) -> None:
    [office] = [r for r in await store.access.list_ranges() if r.name == "office"]
    assert (office.priority, office.lower, office.upper, office.tls_for_auth) == (10, "192.0.2.0", "192.0.2.255", True)
    assert office.protocols == {"imap", "smtp"} and office.deliveries == {Direction.LOCAL_LOCAL}
    [ban] = await store.access.list_bans()
    assert (ban.subject, ban.offences, ban.expires_at) == ("198.51.100.9", 2, LATER.timestamp())
    assert await store.access.is_known_source(ALICE, IP)
    assert await store.access.has_logged_in_from(IP)
    assert (await store.access.failure_stats("198.51.100.9", "198.51.100.0/24", ALICE, 0.0)).ip_failures == 1
    assert await store.access.add_to_counter(f"conn:{IP}", 1_717_243_200, 1) == 4


async def _check_0005(store: Store) -> None:
    triplet = await store.msgauth.get_triplet(TRIPLET)
    assert triplet is not None
    assert (triplet.confirmed, triplet.passes, triplet.first_seen) == (True, 3, WHEN.timestamp())
    assert await store.msgauth.network_whitelisted("198.51.100.0/24", WHEN.timestamp())


async def _check_0007_account_freeze(store: Store) -> None:
    bob = await store.get_account(BOB)
    assert bob is not None and (bob.frozen, bob.frozen_reason) == (True, "compromised")
    assert [(c.account, c.kind) for c in await store.account_changes_since(0)] == [(BOB, "frozen")]


async def _check_defaults_before_0007(store: Store) -> None:
    bob = await store.get_account(BOB)  # accounts from before the freeze flag are not frozen
    assert bob is not None and (bob.frozen, bob.frozen_reason) == (False, "")


async def _check_0009_security(store: Store) -> None:
    [run] = await store.security.list_audit_runs()
    assert (run.target, run.trigger, run.score, run.worst, run.started_at) == ("own", "scheduled", 88, "medium", WHEN)
    assert await store.security.sign_in_sources(BOB) == [BOB_IP]
    assert await store.security.weekly_digest_accounts() == [ALICE]


async def _check_seeded_by_0009(store: Store, written: tuple[str, ...]) -> None:
    """The upgrade to 0009 recorded the sources known before it (a successful login in
    login_history, 0003; access_known_sources, 0004) and the newest login-history id as the cursor."""
    known = "0003_credentials" in written or "0004_access" in written
    assert await store.security.sign_in_sources(ALICE) == ([IP] if known else [])
    assert await store.security.sign_in_sources(BOB) == []
    cursor = await store.get_setting("notices.feed_cursor")
    assert cursor == (str(await store.security.latest_login_event_id()) if "0003_credentials" in written else None)


CHECKS: dict[str, Callable[[Store], Awaitable[None]]] = {
    "0001": _check_0001, "0002_queue": _check_0002, "0003_credentials": _check_0003, "0004_access": _check_0004,
    "0005_msgauth": _check_0005, "0007_account_freeze": _check_0007_account_freeze,
    "0009_security": _check_0009_security,
}


async def check_rows(store: Store, revision: str, skip: tuple[str, ...] = ()) -> None:
    """Every row :func:`build_database_at` put in at ``revision`` reads back as it was written
    (but those of the revisions in ``skip``)."""
    written = CHAIN[:CHAIN.index(revision) + 1]
    for name in written:
        if name in CHECKS and name not in skip:
            await CHECKS[name](store)
    if "0007_account_freeze" not in written:
        await _check_defaults_before_0007(store)
    if "0009_security" not in written:
        await _check_seeded_by_0009(store, written)


async def remove_rows(engine: AsyncEngine) -> None:
    """Delete every row of every table but the schema's own (alembic_version, the writer setting)."""
    async with engine.begin() as connection:
        tables = await connection.run_sync(lambda sync: sa.inspect(sync).get_sorted_table_and_fkc_names())
        for table, _constraints in reversed(tables):
            if table and table != "alembic_version":
                condition = " WHERE key <> 'schema.written_by_version'" if table == "settings" else ""
                await connection.execute(sa.text(f'DELETE FROM "{table}"{condition}'))
