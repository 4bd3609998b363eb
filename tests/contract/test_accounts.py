"""Contract: AccountStore, on every backend."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest

from hardmail.store.ports import AlreadyExists, NotFound, Store

HASH = "$argon2id$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


@pytest.fixture
async def hosted(store: Store) -> Store:
    await store.add_domain("example.org")
    await store.add_domain("example.net")
    return store


async def test_added_account_is_returned_and_found(hosted: Store) -> None:
    added = await hosted.add_account("alice@example.org", HASH, "Alice Liddell")
    assert (added.address, added.password_hash, added.display_name) == (
        "alice@example.org",
        HASH,
        "Alice Liddell",
    )
    assert added.enabled and added.domain == "example.org"
    assert added.created_at is not None and added.created_at.utcoffset() == timedelta(0)
    assert await hosted.get_account("alice@example.org") == added


async def test_display_name_defaults_to_empty(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", HASH)
    found = await hosted.get_account("alice@example.org")
    assert found is not None and found.display_name == ""


async def test_unknown_account_is_none(hosted: Store) -> None:
    assert await hosted.get_account("nobody@example.org") is None


async def test_account_in_unknown_domain_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound, match=re.escape("example.com")):
        await hosted.add_account("alice@example.com", HASH)
    assert await hosted.get_account("alice@example.com") is None


async def test_duplicate_account_raises_already_exists(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", HASH)
    with pytest.raises(AlreadyExists, match=re.escape("alice@example.org")):
        await hosted.add_account("alice@example.org", "other")
    found = await hosted.get_account("alice@example.org")
    assert found is not None and found.password_hash == HASH


async def test_account_cannot_take_an_alias_address(hosted: Store) -> None:
    await hosted.add_alias("info@example.org", ("bob@example.net",))
    with pytest.raises(AlreadyExists, match="alias"):
        await hosted.add_account("info@example.org", HASH)
    assert await hosted.get_account("info@example.org") is None


async def test_accounts_are_listed_by_address(hosted: Store) -> None:
    for address in ("zed@example.org", "bob@example.net", "amy@example.org"):
        await hosted.add_account(address, HASH)
    listed = [account.address for account in await hosted.list_accounts()]
    assert listed == ["amy@example.org", "bob@example.net", "zed@example.org"]


async def test_accounts_are_listed_per_domain(hosted: Store) -> None:
    for address in ("zed@example.org", "bob@example.net", "amy@example.org"):
        await hosted.add_account(address, HASH)
    await hosted.add_alias("info@example.org", ("amy@example.org",))
    listed = [account.address for account in await hosted.list_accounts("example.org")]
    assert listed == ["amy@example.org", "zed@example.org"]
    assert await hosted.list_accounts("example.com") == []


async def test_password_hash_can_be_replaced(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", HASH)
    await hosted.set_password_hash("alice@example.org", "new-hash")
    found = await hosted.get_account("alice@example.org")
    assert found is not None and found.password_hash == "new-hash"


async def test_setting_password_of_unknown_account_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound):
        await hosted.set_password_hash("nobody@example.org", "new-hash")


async def test_account_can_be_disabled_and_enabled(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", HASH)
    await hosted.set_account_enabled("alice@example.org", False)
    disabled = await hosted.get_account("alice@example.org")
    assert disabled is not None and not disabled.enabled
    await hosted.set_account_enabled("alice@example.org", True)
    enabled = await hosted.get_account("alice@example.org")
    assert enabled is not None and enabled.enabled


async def test_enabling_unknown_account_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound):
        await hosted.set_account_enabled("nobody@example.org", True)


async def test_removed_account_is_gone_and_can_be_added_again(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", HASH)
    await hosted.remove_account("alice@example.org")
    assert await hosted.get_account("alice@example.org") is None
    assert await hosted.list_accounts() == []
    again = await hosted.add_account("alice@example.org", "second")
    assert again.password_hash == "second"


async def test_removing_unknown_account_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound):
        await hosted.remove_account("nobody@example.org")


async def test_remove_account_does_not_remove_an_alias_of_that_name(hosted: Store) -> None:
    await hosted.add_alias("info@example.org", ("bob@example.net",))
    with pytest.raises(NotFound):
        await hosted.remove_account("info@example.org")
    assert await hosted.get_alias("info@example.org") is not None


async def test_account_repr_hides_the_hash(hosted: Store) -> None:
    added = await hosted.add_account("alice@example.org", HASH)
    assert HASH not in repr(added)


async def test_racing_account_and_alias_for_one_address_leave_exactly_one(hosted: Store) -> None:
    addresses = [f"user{n}@example.org" for n in range(8)]
    attempts = [hosted.add_account(address, HASH) for address in addresses] + [
        hosted.add_alias(address, ("x@example.net",)) for address in addresses
    ]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(failures) == len(addresses)
    assert all(isinstance(failure, AlreadyExists) for failure in failures), failures
    accounts = {account.address for account in await hosted.list_accounts()}
    aliases = {alias.source for alias in await hosted.list_aliases()}
    assert accounts | aliases == set(addresses) and not accounts & aliases
