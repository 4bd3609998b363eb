"""Contract: the CredentialStore (credentials, TOTP steps, recovery codes, app passwords, login
history), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from hardmail.auth.scram import derive_secrets
from hardmail.store.ports import AlreadyExists, NotFound, Store
from hardmail.store.ports_credentials import LoginEvent

ALICE = "alice@example.org"
WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
async def alice(store: Store) -> str:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(text("DELETE FROM login_history"))  # the audit trail outlives TRUNCATE of accounts
    await store.add_domain("example.org")
    await store.add_account(ALICE, "$argon2id$old")
    return ALICE


async def test_default_state_and_unknown_account(store: Store, alice: str) -> None:
    state = await store.credentials.get_credentials(alice)
    assert state is not None and state.scram is None and not state.two_factor and not state.must_change
    assert await store.credentials.get_credentials("nobody@example.org") is None


async def test_set_password_replaces_hash_and_secrets_together(store: Store, alice: str) -> None:
    scram = derive_secrets("pw", 4096)
    await store.credentials.set_password(alice, "$argon2id$new", scram, must_change=True)
    account = await store.get_account(alice)
    state = await store.credentials.get_credentials(alice)
    assert account is not None and account.password_hash == "$argon2id$new"
    assert state is not None and state.scram == scram and state.must_change
    assert state.password_changed_at is not None
    with pytest.raises(NotFound):
        await store.credentials.set_password("nobody@example.org", "h", None)


async def test_upgrade_keeps_change_time_and_clears_legacy(store: Store, alice: str) -> None:
    await store.credentials.set_password(alice, "{HMS2}abc", None, legacy_scheme="hmailserver2")
    before = await store.credentials.get_credentials(alice)
    assert await store.credentials.list_legacy() == [(alice, "hmailserver2")]
    assert await store.credentials.upgrade_hash(
        alice, "$argon2id$up", derive_secrets("pw", 4096), expected_hash="{HMS2}abc")
    after = await store.credentials.get_credentials(alice)
    assert before is not None and after is not None
    assert after.password_changed_at == before.password_changed_at and after.legacy_scheme is None
    assert await store.credentials.list_legacy() == []


async def test_upgrade_is_a_compare_and_swap_that_never_undoes_a_password_change(
    store: Store, alice: str
) -> None:
    await store.credentials.set_password(alice, "{HMS2}abc", None, legacy_scheme="hmailserver2")
    changed = derive_secrets("new pw", 4096)
    await store.credentials.set_password(alice, "$argon2id$changed", changed)  # a change meanwhile
    stale = derive_secrets("old pw", 4096)
    assert not await store.credentials.upgrade_hash(alice, "$argon2id$up", stale, expected_hash="{HMS2}abc")
    account = await store.get_account(alice)
    state = await store.credentials.get_credentials(alice)
    assert account is not None and account.password_hash == "$argon2id$changed"
    assert state is not None and state.scram == changed
    assert not await store.credentials.upgrade_hash("nobody@example.org", "h", None, expected_hash="h")


async def test_upgrade_without_scram_keeps_the_stored_secrets(store: Store, alice: str) -> None:
    scram = derive_secrets("pw", 4096)
    await store.credentials.set_password(alice, "$argon2id$old", scram)
    assert await store.credentials.upgrade_hash(alice, "$argon2id$up", None, expected_hash="$argon2id$old")
    state = await store.credentials.get_credentials(alice)
    assert state is not None and state.scram == scram


async def test_totp_steps_only_move_forward(store: Store, alice: str) -> None:
    assert not await store.credentials.claim_totp_step(alice, 5)  # TOTP is off
    await store.credentials.set_totp(alice, "token", ["d1", "d2"])
    assert await store.credentials.claim_totp_step(alice, 5)
    assert not await store.credentials.claim_totp_step(alice, 5)
    assert not await store.credentials.claim_totp_step(alice, 4)
    assert await store.credentials.claim_totp_step(alice, 6)


async def test_recovery_codes_are_used_once_and_go_with_2fa(store: Store, alice: str) -> None:
    await store.credentials.set_totp(alice, "token", ["d1", "d2"])
    assert await store.credentials.use_recovery_code(alice, "d1")
    assert not await store.credentials.use_recovery_code(alice, "d1")
    assert await store.credentials.count_recovery_codes(alice) == 1
    await store.credentials.set_totp(alice, None, [])
    assert await store.credentials.count_recovery_codes(alice) == 0


async def test_app_passwords(store: Store, alice: str) -> None:
    expires = WHEN + timedelta(days=1)
    added = await store.credentials.add_app_password(alice, "phone", "d" * 64, frozenset({"smtp", "imap"}), expires)
    with pytest.raises(AlreadyExists):
        await store.credentials.add_app_password(alice, "phone", "e" * 64, frozenset({"smtp"}), None)
    found = await store.credentials.find_app_password(alice, "d" * 64)
    assert found is not None and found.id == added.id and found.scopes == {"smtp", "imap"}
    assert found.expires_at == expires
    await store.credentials.touch_app_password(added.id, WHEN, "2001:db8::1")
    [listed] = await store.credentials.list_app_passwords(alice)
    assert (listed.last_used_at, listed.last_used_ip) == (WHEN, "2001:db8::1")
    await store.credentials.revoke_app_password(alice, "phone")
    with pytest.raises(NotFound):
        await store.credentials.revoke_app_password(alice, "phone")


async def test_credentials_go_with_the_account(store: Store, alice: str) -> None:
    await store.credentials.set_totp(alice, "token", ["d1"])
    await store.credentials.add_app_password(alice, "phone", "d" * 64, frozenset({"smtp"}), None)
    await store.remove_account(alice)
    await store.add_account(alice, "h")
    assert await store.credentials.list_app_passwords(alice) == []
    assert await store.credentials.count_recovery_codes(alice) == 0


async def test_login_history_newest_first_and_per_account(store: Store, alice: str) -> None:
    for minute, kind in enumerate(("password-set", "login", "2fa-enabled")):
        await store.credentials.append_login_event(LoginEvent(
            WHEN + timedelta(minutes=minute), alice, kind, "done", "smtp", "PLAIN", "192.0.2.1", "TLSv1.3", "d"))
    await store.credentials.append_login_event(LoginEvent(WHEN, "bob@example.org", "login", "failure"))
    events = await store.credentials.list_login_events(alice)
    assert [e.kind for e in events] == ["2fa-enabled", "login", "password-set"]
    assert events[0].at == WHEN + timedelta(minutes=2) and events[0].tls_version == "TLSv1.3"
    assert len(await store.credentials.list_login_events(alice, limit=2)) == 2


async def test_most_common_scram_iterations(store: Store, alice: str) -> None:
    assert await store.credentials.most_common_scram_iterations() is None
    await store.credentials.set_password(alice, "$argon2id$a", derive_secrets("pw", 4096))
    assert await store.credentials.most_common_scram_iterations() == 4096
    for name in ("bob", "carol"):
        await store.add_account(f"{name}@example.org", "$argon2id$x")
        await store.credentials.set_password(f"{name}@example.org", "$argon2id$x", derive_secrets("pw", 5000))
    assert await store.credentials.most_common_scram_iterations() == 5000
