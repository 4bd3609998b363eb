"""Contract: account freeze and the account-change signal (AccountStore), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hardmail.auth.scram import derive_secrets
from hardmail.store.ports import (
    CHANGE_APP_PASSWORD_REVOKED,
    CHANGE_DISABLED,
    CHANGE_ENABLED,
    CHANGE_FROZEN,
    CHANGE_MUST_CHANGE,
    CHANGE_PASSWORD,
    CHANGE_REMOVED,
    CHANGE_TWO_FACTOR_ON,
    CHANGE_UNFROZEN,
    NotFound,
    Store,
)

HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
ALICE = "alice@example.org"


@pytest.fixture
async def hosted(store: Store) -> Store:
    await store.add_domain("example.org")
    await store.add_account(ALICE, HASH)
    return store


async def _kinds_since(store: Store, after: int) -> list[tuple[str, str]]:
    return [(c.account, c.kind) for c in await store.account_changes_since(after)]


async def test_freeze_is_stored_with_its_reason_and_undone(hosted: Store) -> None:
    await hosted.set_account_frozen(ALICE, True, "  phished on 2026-12-01 ")
    found = await hosted.get_account(ALICE)
    assert found is not None and found.frozen and found.frozen_reason == "phished on 2026-12-01"
    assert found.enabled  # freezing is not disabling: mail is still received
    await hosted.set_account_frozen(ALICE, False)
    found = await hosted.get_account(ALICE)
    assert found is not None and not found.frozen and found.frozen_reason == ""
    assert [a.frozen for a in await hosted.list_accounts()] == [False]


async def test_a_new_account_is_not_frozen(hosted: Store) -> None:
    found = await hosted.get_account(ALICE)
    assert found is not None and not found.frozen and found.frozen_reason == ""


async def test_freezing_an_unknown_account_raises_not_found_and_records_nothing(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    with pytest.raises(NotFound):
        await hosted.set_account_frozen("nobody@example.org", True, "x")
    with pytest.raises(NotFound):
        await hosted.set_account_enabled("nobody@example.org", False)
    assert await hosted.latest_account_change() == before


async def test_every_change_is_signalled_in_order(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    await hosted.set_account_enabled(ALICE, False)
    await hosted.set_account_enabled(ALICE, True)
    await hosted.set_account_frozen(ALICE, True, "incident")
    await hosted.set_account_frozen(ALICE, False)
    await hosted.credentials.set_password(ALICE, HASH + "x", derive_secrets("a new password", 4096))
    added = await hosted.credentials.add_app_password(ALICE, "phone", "d" * 64, frozenset({"smtp"}), None)
    await hosted.credentials.revoke_app_password(ALICE, "phone")
    await hosted.remove_account(ALICE)
    changes = await hosted.account_changes_since(before)
    assert [(c.account, c.kind) for c in changes] == [
        (ALICE, kind) for kind in (CHANGE_DISABLED, CHANGE_ENABLED, CHANGE_FROZEN, CHANGE_UNFROZEN,
                                   CHANGE_PASSWORD, CHANGE_APP_PASSWORD_REVOKED, CHANGE_REMOVED)
    ]
    ids = [c.id for c in changes]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert changes[5].credential_id == added.id
    assert all(c.credential_id is None for c in changes if c.kind != CHANGE_APP_PASSWORD_REVOKED)
    assert all(c.at.utcoffset() == timedelta(0) for c in changes)
    assert await hosted.latest_account_change() == ids[-1]
    assert await hosted.account_changes_since(ids[-1]) == []
    assert [c.id for c in await hosted.account_changes_since(before, limit=2)] == ids[:2]


async def test_a_hash_upgrade_is_not_a_change(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    assert await hosted.credentials.upgrade_hash(ALICE, HASH + "new", None, expected_hash=HASH)
    assert await hosted.account_changes_since(before) == []


async def test_revoking_an_unknown_app_password_records_nothing(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    with pytest.raises(NotFound):
        await hosted.credentials.revoke_app_password(ALICE, "nothing")
    assert await hosted.latest_account_change() == before


async def test_old_changes_are_pruned(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    await hosted.set_account_enabled(ALICE, False)
    assert await hosted.prune_account_changes(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await _kinds_since(hosted, before) == [(ALICE, CHANGE_DISABLED)]
    assert await hosted.prune_account_changes(datetime.now(UTC) + timedelta(seconds=1)) >= 1
    assert await hosted.account_changes_since(before) == []


async def test_ids_keep_increasing_after_every_change_was_pruned(hosted: Store) -> None:
    """A server process remembers the newest id it applied: an id handed out again after a prune
    that emptied the table would be taken for one already seen, and its change never applied."""
    await hosted.set_account_enabled(ALICE, False)
    await hosted.set_account_enabled(ALICE, True)
    newest = await hosted.latest_account_change()
    await hosted.prune_account_changes(datetime.now(UTC) + timedelta(seconds=1))
    await hosted.set_account_frozen(ALICE, True, "after the prune")
    [change] = await hosted.account_changes_since(newest)
    assert change.id > newest and change.kind == CHANGE_FROZEN


async def test_turning_totp_on_and_requiring_a_new_password_are_signalled_not_their_undoing(hosted: Store) -> None:
    before = await hosted.latest_account_change()
    await hosted.credentials.set_totp(ALICE, "encrypted-secret", ["d1"])
    await hosted.credentials.set_totp(ALICE, None, [])
    await hosted.credentials.set_must_change(ALICE, True)
    await hosted.credentials.set_must_change(ALICE, False)
    assert await _kinds_since(hosted, before) == [(ALICE, CHANGE_TWO_FACTOR_ON), (ALICE, CHANGE_MUST_CHANGE)]
