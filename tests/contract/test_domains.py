"""Contract: DomainStore, on every backend."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from hardmail.store.ports import AlreadyExists, InUse, NotFound, Store


async def test_added_domain_is_returned_and_found(store: Store) -> None:
    added = await store.add_domain("example.org")
    assert added.name == "example.org" and added.enabled
    assert added.created_at is not None and added.created_at.utcoffset() == timedelta(0)
    assert await store.get_domain("example.org") == added


async def test_unknown_domain_is_none(store: Store) -> None:
    assert await store.get_domain("example.net") is None


async def test_duplicate_domain_raises_already_exists(store: Store) -> None:
    await store.add_domain("example.org")
    with pytest.raises(AlreadyExists, match=re.escape("example.org")):
        await store.add_domain("example.org")


async def test_domains_are_listed_by_name(store: Store) -> None:
    for name in ("zeta.example", "alpha.example", "mid.example"):
        await store.add_domain(name)
    names = [domain.name for domain in await store.list_domains()]
    assert names == ["alpha.example", "mid.example", "zeta.example"]


async def test_empty_store_lists_no_domains(store: Store) -> None:
    assert await store.list_domains() == []


async def test_removed_domain_is_gone(store: Store) -> None:
    await store.add_domain("example.org")
    await store.remove_domain("example.org")
    assert await store.get_domain("example.org") is None
    assert await store.list_domains() == []


async def test_removing_unknown_domain_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.remove_domain("example.org")


async def test_domain_with_account_is_in_use(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_account("alice@example.org", "hash")
    with pytest.raises(InUse, match="1 account"):
        await store.remove_domain("example.org")
    assert await store.get_domain("example.org") is not None


async def test_domain_with_alias_is_in_use(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_alias("info@example.org", ("someone@example.net",))
    with pytest.raises(InUse, match="1 alias"):
        await store.remove_domain("example.org")


async def test_domain_with_catch_all_is_in_use(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_alias("@example.org", ("someone@example.net",))
    with pytest.raises(InUse):
        await store.remove_domain("example.org")


async def test_domain_can_be_removed_once_emptied(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_account("alice@example.org", "hash")
    await store.add_alias("@example.org", ("alice@example.org",))
    await store.remove_account("alice@example.org")
    await store.remove_alias("@example.org")
    await store.remove_domain("example.org")
    assert await store.get_domain("example.org") is None


async def test_other_domains_do_not_block_removal(store: Store) -> None:
    await store.add_domain("example.org")
    await store.add_domain("example.net")
    await store.add_account("bob@example.net", "hash")
    await store.remove_domain("example.org")
    assert [d.name for d in await store.list_domains()] == ["example.net"]
