"""The authenticator on a real SQLite store: app-password scopes, 2FA, must-change, expiry, and the
upgrade of legacy and outdated hashes at the first successful login."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from hardmail.admin.service import AdminService
from hardmail.auth.app_passwords import app_password_digest, new_app_password
from hardmail.auth.authenticator import AuthOutcome, LoginAttempt, LoginRules, authenticate
from hardmail.auth.events import now_utc
from hardmail.auth.hashing import hash_password
from hardmail.auth.legacy import normalize_import
from hardmail.auth.pool import DEFAULT_LANE, HashPool, Lane
from hardmail.config.schema import AuthSection, PasswordHashSection, PasswordPolicySection
from hardmail.core.clock import FakeClock
from hardmail.store import open_store
from hardmail.store.ports import Store, StoreError

CHEAP = PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1, hash_workers=1)
ALICE = "alice@example.org"
PASSWORD = "correct horse battery staple"
RULES = LoginRules(PasswordPolicySection(), scram_iterations=4096)
SMTP = LoginAttempt(protocol="smtp", client_ip="192.0.2.7", mechanism="PLAIN", tls_version="TLSv1.3")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}", clock=clock)
    await opened.migrate()
    admin = AdminService(opened, CHEAP, auth=AuthSection(argon2=CHEAP, scram={"iterations": 4096}), clock=clock)
    await admin.add_domain("example.org")
    await admin.add_account(ALICE, PASSWORD)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def pool() -> Iterator[HashPool]:
    created = HashPool(CHEAP)
    yield created
    created.close()


async def _login(store: Store, pool: HashPool, clock: FakeClock, password: str = PASSWORD,
                 attempt: LoginAttempt = SMTP, user: str = ALICE) -> AuthOutcome:
    return await authenticate(store, pool, user, password, attempt, rules=RULES, clock=clock)


async def _kinds(store: Store) -> list[tuple[str, str]]:
    return [(e.kind, e.result) for e in reversed(await store.credentials.list_login_events(ALICE))]


async def test_success_is_recorded_with_its_attempt(store: Store, pool: HashPool, clock: FakeClock) -> None:
    outcome = await _login(store, pool, clock)
    assert (outcome.account, outcome.via) == (ALICE, "password")
    latest = (await store.credentials.list_login_events(ALICE))[0]
    assert (latest.kind, latest.result, latest.protocol, latest.mechanism, latest.client_ip, latest.tls_version) == (
        "login", "success", "smtp", "PLAIN", "192.0.2.7", "TLSv1.3")


async def test_unknown_user_and_wrong_password_look_the_same(store: Store, pool: HashPool, clock: FakeClock) -> None:
    unknown = await _login(store, pool, clock, user="nobody@example.org")
    wrong = await _login(store, pool, clock, password="wrong horse battery staple")
    assert (unknown.account, unknown.notice) == (wrong.account, wrong.notice) == (None, None)
    assert (unknown.reason, wrong.reason) == ("unknown user", "wrong password")


async def test_legacy_hash_is_upgraded_at_first_login(store: Store, pool: HashPool, clock: FakeClock) -> None:
    salt = "0a1b2c"
    exported = salt + hashlib.sha256((salt + "an old hmail password").encode()).hexdigest()
    stored = normalize_import("hmailserver3", exported)
    await store.credentials.set_password(ALICE, stored, None, legacy_scheme="hmailserver3")
    assert await store.credentials.list_legacy() == [(ALICE, "hmailserver3")]
    assert (await _login(store, pool, clock, "wrong")).account is None
    assert (await _login(store, pool, clock, "an old hmail password")).account == ALICE
    account = await store.get_account(ALICE)
    state = await store.credentials.get_credentials(ALICE)
    assert account is not None and account.password_hash.startswith("$argon2id$")
    assert state is not None and state.scram is not None and state.legacy_scheme is None
    assert await store.credentials.list_legacy() == []
    assert ("legacy-hash-upgraded", "done") in await _kinds(store)
    assert (await _login(store, pool, clock, "an old hmail password")).account == ALICE


async def test_argon2_parameters_are_upgraded_at_login(store: Store, tmp_path: Path, clock: FakeClock) -> None:
    stronger = PasswordHashSection(time_cost=2, memory_cost=8192, parallelism=1, hash_workers=1)
    await store.credentials.set_password(ALICE, hash_password(PASSWORD, CHEAP), None)
    pool = HashPool(stronger)
    try:
        assert (await _login(store, pool, clock)).account == ALICE
    finally:
        pool.close()
    account = await store.get_account(ALICE)
    assert account is not None and ",t=2," in account.password_hash
    assert ("hash-parameters-upgraded", "done") in await _kinds(store)


async def _add_app_password(store: Store, scopes: set[str], expires_days: int | None = None) -> str:
    secret = new_app_password()
    expires = None if expires_days is None else now_utc(FakeClock()) + timedelta(days=expires_days)
    await store.credentials.add_app_password(ALICE, f"device-{len(scopes)}-{expires_days}",
                                             app_password_digest(secret), frozenset(scopes), expires)
    return secret


async def _enable_2fa(store: Store) -> None:
    await store.credentials.set_totp(ALICE, "encrypted-secret-token", [])


async def test_two_factor_refuses_the_main_password_like_a_wrong_one(
    store: Store, pool: HashPool, clock: FakeClock
) -> None:
    await _enable_2fa(store)
    outcome = await _login(store, pool, clock)
    assert outcome.account is None and outcome.notice is not None and "app password" in outcome.notice
    assert outcome.reason == "two-factor account: use an app password"
    wrong = await _login(store, pool, clock, "wrong horse battery staple")
    assert wrong.notice is None  # the notice text is only for the user who knows the password
    latest = (await store.credentials.list_login_events(ALICE))[1]
    assert (latest.kind, latest.result) == ("login", "refused")
    assert latest.detail == "two-factor account: use an app password"


async def test_scoped_app_password_works_only_in_its_scope(store: Store, pool: HashPool, clock: FakeClock) -> None:
    await _enable_2fa(store)
    smtp_secret = await _add_app_password(store, {"smtp"})
    imap_secret = await _add_app_password(store, {"imap", "pop3"})
    ok = await _login(store, pool, clock, smtp_secret)
    assert (ok.account, ok.via) == (ALICE, "app-password")
    assert (await _login(store, pool, clock, smtp_secret.upper().replace("-", " "))).account == ALICE
    refused = await _login(store, pool, clock, imap_secret)
    assert (refused.account, refused.notice) == (None, None)
    imap = LoginAttempt(protocol="imap", client_ip="192.0.2.8")
    assert (await _login(store, pool, clock, imap_secret, attempt=imap)).account == ALICE


async def test_app_password_first_use_and_last_use_are_recorded(store: Store, pool: HashPool, clock: FakeClock) -> None:
    secret = await _add_app_password(store, {"smtp"})
    await _login(store, pool, clock, secret)
    clock.advance(60)
    await _login(store, pool, clock, secret)
    [record] = await store.credentials.list_app_passwords(ALICE)
    assert record.last_used_ip == "192.0.2.7" and record.last_used_at == now_utc(clock)
    assert (await _kinds(store)).count(("app-password-first-use", "done")) == 1


async def test_expired_app_password_fails_like_a_wrong_password(store: Store, pool: HashPool, clock: FakeClock) -> None:
    secret = await _add_app_password(store, {"smtp"}, expires_days=1)
    assert (await _login(store, pool, clock, secret)).account == ALICE
    clock.advance(2 * 86400)
    outcome = await _login(store, pool, clock, secret)
    assert (outcome.account, outcome.notice) == (None, None)


async def test_must_change_and_expiry_refuse_with_a_text(store: Store, pool: HashPool, clock: FakeClock) -> None:
    await store.credentials.set_must_change(ALICE, True)
    outcome = await _login(store, pool, clock)
    assert outcome.notice is not None and "must be changed" in outcome.notice
    await store.credentials.set_must_change(ALICE, False)
    expiring = LoginRules(PasswordPolicySection(max_age_days=30), scram_iterations=4096)
    clock.advance(31 * 86400)
    expired = await authenticate(store, pool, ALICE, PASSWORD, SMTP, rules=expiring, clock=clock)
    assert expired.notice is not None and "expired" in expired.notice


async def test_disabled_account_fails_without_a_text(store: Store, pool: HashPool, clock: FakeClock) -> None:
    await store.set_account_enabled(ALICE, False)
    outcome = await _login(store, pool, clock)
    assert (outcome.account, outcome.notice, outcome.reason) == (None, None, "account disabled")


async def _import_hms2(store: Store, password: str) -> str:
    stored = normalize_import("hmailserver2", hashlib.md5(password.encode(), usedforsecurity=False).hexdigest())
    await store.credentials.set_password(ALICE, stored, None, legacy_scheme="hmailserver2")
    return stored


async def test_a_legacy_password_saslprep_refuses_logs_in_and_is_upgraded_without_scram(
    store: Store, pool: HashPool, clock: FakeClock
) -> None:
    emoji_password = "an old password \N{GRINNING FACE}"  # unassigned in Unicode 3.2: SASLprep refuses it
    await _import_hms2(store, emoji_password)
    outcome = await _login(store, pool, clock, emoji_password)
    assert (outcome.account, outcome.reason) == (ALICE, "ok")
    account = await store.get_account(ALICE)
    state = await store.credentials.get_credentials(ALICE)
    assert account is not None and account.password_hash.startswith("$argon2id$")
    assert state is not None and state.scram is None and state.legacy_scheme is None
    assert (await _login(store, pool, clock, emoji_password)).account == ALICE


async def test_a_failing_upgrade_never_fails_the_login(
    store: Store, pool: HashPool, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = await _import_hms2(store, "an old hmail password")

    async def broken(*_args: object, **_kwargs: object) -> bool:
        raise StoreError("database is locked")

    monkeypatch.setattr(store.credentials, "upgrade_hash", broken)
    outcome = await _login(store, pool, clock, "an old hmail password")
    assert (outcome.account, outcome.reason) == (ALICE, "ok")
    account = await store.get_account(ALICE)
    assert account is not None and account.password_hash == stored  # upgraded at a later login
    assert ("login", "success") in await _kinds(store)


async def test_an_upgrade_never_undoes_a_password_change_made_meanwhile(
    store: Store, pool: HashPool, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import_hms2(store, "an old hmail password")
    admin = AdminService(store, CHEAP, auth=AuthSection(argon2=CHEAP, scram={"iterations": 4096}), clock=clock)
    real_hash = pool.hash

    async def hash_while_the_admin_changes_the_password(password: str, lane: Lane = DEFAULT_LANE) -> str:
        await admin.set_password(ALICE, "a brand new passphrase here")  # lands between verify and upgrade
        return await real_hash(password, lane)

    monkeypatch.setattr(pool, "hash", hash_while_the_admin_changes_the_password)
    assert (await _login(store, pool, clock, "an old hmail password")).account == ALICE
    monkeypatch.undo()
    assert (await _login(store, pool, clock, "a brand new passphrase here")).account == ALICE
    assert (await _login(store, pool, clock, "an old hmail password")).account is None
    assert ("legacy-hash-upgraded", "done") not in await _kinds(store)


@pytest.mark.parametrize("refusal", ["disabled", "frozen"])
async def test_a_right_app_password_of_a_refused_account_costs_what_a_wrong_password_costs(
    store: Store, pool: HashPool, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """Refused without a hash verification, a right app password would answer faster than a wrong
    one: the timing would confirm it to whoever holds it."""
    secret = await _add_app_password(store, {"smtp"})
    if refusal == "disabled":
        await store.set_account_enabled(ALICE, False)
    else:
        await store.set_account_frozen(ALICE, True, "phished")
    hashed: list[str] = []
    real_verify, real_dummy = pool.verify, pool.dummy_verify

    async def verify(stored: str, password: str, lane: Lane = DEFAULT_LANE) -> object:
        hashed.append("verify")
        return await real_verify(stored, password, lane)

    async def dummy_verify(lane: Lane = DEFAULT_LANE) -> None:
        hashed.append("dummy")
        await real_dummy(lane)

    monkeypatch.setattr(pool, "verify", verify)
    monkeypatch.setattr(pool, "dummy_verify", dummy_verify)
    wrong = await _login(store, pool, clock, "not the password at all")
    assert wrong.account is None and len(hashed) == 1
    refused = await _login(store, pool, clock, secret)
    assert (refused.account, refused.notice) == (None, None)
    assert len(hashed) == 2
