"""Contract: AliasStore, on every backend."""

from __future__ import annotations

import re

import pytest

from hardmail.store.ports import Alias, AlreadyExists, NotFound, Store


@pytest.fixture
async def hosted(store: Store) -> Store:
    await store.add_domain("example.org")
    await store.add_domain("example.net")
    return store


async def test_added_alias_keeps_its_targets_in_order(hosted: Store) -> None:
    targets = ("zed@example.org", "amy@example.com", "bob@example.net")
    added = await hosted.add_alias("team@example.org", targets)
    assert added == Alias("team@example.org", targets, True)
    assert await hosted.get_alias("team@example.org") == added


async def test_catch_all_alias(hosted: Store) -> None:
    added = await hosted.add_alias("@example.org", ("postmaster@example.org",))
    assert added.is_catch_all and added.domain == "example.org"
    found = await hosted.get_alias("@example.org")
    assert found is not None and found.targets == ("postmaster@example.org",)


async def test_unknown_alias_is_none(hosted: Store) -> None:
    assert await hosted.get_alias("nobody@example.org") is None


async def test_alias_in_unknown_domain_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound, match=re.escape("example.com")):
        await hosted.add_alias("info@example.com", ("a@example.org",))
    with pytest.raises(NotFound):
        await hosted.add_alias("@example.com", ("a@example.org",))


async def test_duplicate_alias_raises_already_exists(hosted: Store) -> None:
    await hosted.add_alias("info@example.org", ("a@example.net",))
    with pytest.raises(AlreadyExists, match=re.escape("info@example.org")):
        await hosted.add_alias("info@example.org", ("b@example.net",))
    found = await hosted.get_alias("info@example.org")
    assert found is not None and found.targets == ("a@example.net",)


async def test_alias_cannot_take_an_account_address(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", "hash")
    with pytest.raises(AlreadyExists, match="account"):
        await hosted.add_alias("alice@example.org", ("bob@example.net",))
    assert await hosted.get_alias("alice@example.org") is None


async def test_aliases_are_listed_by_source(hosted: Store) -> None:
    for source in ("zed@example.org", "bob@example.net", "@example.org", "amy@example.org"):
        await hosted.add_alias(source, ("x@example.com",))
    listed = [alias.source for alias in await hosted.list_aliases()]
    assert listed == ["@example.org", "amy@example.org", "bob@example.net", "zed@example.org"]


async def test_aliases_are_listed_per_domain_with_their_targets(hosted: Store) -> None:
    await hosted.add_alias("b@example.org", ("x@example.com", "y@example.com"))
    await hosted.add_alias("a@example.org", ("z@example.com",))
    await hosted.add_alias("c@example.net", ("w@example.com",))
    await hosted.add_account("d@example.org", "hash")
    listed = await hosted.list_aliases("example.org")
    assert listed == [
        Alias("a@example.org", ("z@example.com",)),
        Alias("b@example.org", ("x@example.com", "y@example.com")),
    ]
    assert await hosted.list_aliases("example.com") == []


async def test_aliases_targeting_an_address(hosted: Store) -> None:
    await hosted.add_alias("team@example.org", ("bob@example.org", "alice@example.org"))
    await hosted.add_alias("info@example.net", ("alice@example.org",))
    await hosted.add_alias("sales@example.org", ("bob@example.org",))
    await hosted.add_alias("@example.org", ("alice@example.org",))
    found = await hosted.aliases_targeting("alice@example.org")
    assert found == [
        Alias("info@example.net", ("alice@example.org",)),
        Alias("team@example.org", ("bob@example.org", "alice@example.org")),
    ]


async def test_aliases_targeting_nobody_is_empty(hosted: Store) -> None:
    await hosted.add_alias("team@example.org", ("bob@example.org",))
    assert await hosted.aliases_targeting("alice@example.org") == []


async def test_removed_alias_is_gone_everywhere(hosted: Store) -> None:
    await hosted.add_alias("team@example.org", ("alice@example.org",))
    await hosted.remove_alias("team@example.org")
    assert await hosted.get_alias("team@example.org") is None
    assert await hosted.list_aliases() == []
    assert await hosted.aliases_targeting("alice@example.org") == []
    again = await hosted.add_alias("team@example.org", ("bob@example.org",))
    assert again.targets == ("bob@example.org",)


async def test_removing_unknown_alias_raises_not_found(hosted: Store) -> None:
    with pytest.raises(NotFound):
        await hosted.remove_alias("nobody@example.org")


async def test_remove_alias_does_not_remove_an_account_of_that_name(hosted: Store) -> None:
    await hosted.add_account("alice@example.org", "hash")
    with pytest.raises(NotFound):
        await hosted.remove_alias("alice@example.org")
    assert await hosted.get_account("alice@example.org") is not None
