"""AdminService: normalisation, validation, and errors an admin can act on."""

from __future__ import annotations

import re

import pytest

from hardmail.admin.service import AdminError, AdminService
from hardmail.auth.hashing import verify_password
from hardmail.config.schema import PasswordHashSection
from hardmail.store.ports import Alias, Store

PASSWORD = "a long enough passphrase"


@pytest.fixture
async def hosted(service: AdminService) -> AdminService:
    await service.add_domain("example.org")
    return service


async def test_domain_is_normalised(service: AdminService) -> None:
    added = await service.add_domain(" Example.ORG. ")
    assert added.name == "example.org"
    assert [d.name for d in await service.list_domains()] == ["example.org"]


async def test_internationalised_domain_is_stored_as_a_label(service: AdminService) -> None:
    added = await service.add_domain("bücher.example")
    assert added.name == "xn--bcher-kva.example"


@pytest.mark.parametrize("name", ["not a domain", "-bad.example", "[192.0.2.1]", ""])
async def test_invalid_domain_is_refused(service: AdminService, name: str) -> None:
    with pytest.raises(AdminError) as refused:
        await service.add_domain(name)
    assert refused.value.hint


async def test_duplicate_domain_is_refused(hosted: AdminService) -> None:
    with pytest.raises(AdminError, match="already exists"):
        await hosted.add_domain("EXAMPLE.org")


async def test_removing_unknown_domain_says_it_is_not_hosted(service: AdminService) -> None:
    with pytest.raises(AdminError, match="not hosted here") as refused:
        await service.remove_domain("example.net")
    assert "hardmail domain add example.net" in refused.value.hint


async def test_domain_in_use_cannot_be_removed(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    with pytest.raises(AdminError, match="still has 1 account") as refused:
        await hosted.remove_domain("example.org")
    assert "account list --domain example.org" in refused.value.hint


async def test_account_is_normalised_and_hashed(
    hosted: AdminService, store: Store, hash_params: PasswordHashSection
) -> None:
    account = await hosted.add_account("Alice@Example.ORG", PASSWORD, " Alice ")
    assert (account.address, account.display_name) == ("alice@example.org", "Alice")
    assert account.password_hash.startswith("$argon2id$")
    stored = await store.get_account("alice@example.org")
    assert stored is not None and verify_password(stored.password_hash, PASSWORD, hash_params).ok


async def test_account_in_unknown_domain_is_refused_with_a_hint(hosted: AdminService) -> None:
    with pytest.raises(AdminError) as refused:
        await hosted.add_account("bob@example.net", PASSWORD)
    assert refused.value.message == "domain example.net is not hosted here"
    assert refused.value.hint == "add it with `hardmail domain add example.net`"


@pytest.mark.parametrize("address", ["no-at-sign", "a b@example.org", "@example.org", "x@"])
async def test_invalid_address_is_refused(hosted: AdminService, address: str) -> None:
    with pytest.raises(AdminError, match="invalid address"):
        await hosted.add_account(address, PASSWORD)


async def test_weak_password_is_refused_without_echoing_it(hosted: AdminService) -> None:
    with pytest.raises(AdminError, match="password refused") as refused:
        await hosted.add_account("alice@example.org", "short-pw")
    assert "short-pw" not in str(refused.value) + refused.value.hint
    assert await hosted.list_accounts() == []


async def test_duplicate_account_and_alias_clash_is_refused(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    with pytest.raises(AdminError, match="already exists"):
        await hosted.add_account("ALICE@example.org", PASSWORD)
    with pytest.raises(AdminError, match=re.escape("account alice@example.org already exists")):
        await hosted.add_alias("alice@example.org", ["bob@example.net"])


async def test_set_password_replaces_the_hash(
    hosted: AdminService, store: Store, hash_params: PasswordHashSection
) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    assert await hosted.set_password("Alice@example.org", "another good passphrase") == (
        "alice@example.org"
    )
    stored = await store.get_account("alice@example.org")
    assert stored is not None
    assert verify_password(stored.password_hash, "another good passphrase", hash_params).ok
    assert not verify_password(stored.password_hash, PASSWORD, hash_params).ok


async def test_set_password_of_unknown_account_is_refused(hosted: AdminService) -> None:
    with pytest.raises(AdminError, match=re.escape("no account bob@example.org")):
        await hosted.set_password("bob@example.org", PASSWORD)


async def test_set_password_checks_strength(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    with pytest.raises(AdminError, match="password refused"):
        await hosted.set_password("alice@example.org", "alice-password-1")


async def test_accounts_can_be_disabled_listed_and_removed(hosted: AdminService) -> None:
    await hosted.add_domain("example.net")
    await hosted.add_account("zed@example.org", PASSWORD)
    await hosted.add_account("bob@example.net", PASSWORD)
    await hosted.set_account_enabled("zed@example.org", False)
    accounts = await hosted.list_accounts()
    assert [(a.address, a.enabled) for a in accounts] == [
        ("bob@example.net", True),
        ("zed@example.org", False),
    ]
    assert [a.address for a in await hosted.list_accounts("EXAMPLE.net")] == ["bob@example.net"]
    await hosted.remove_account("zed@example.org")
    with pytest.raises(AdminError, match=re.escape("no account zed@example.org")):
        await hosted.remove_account("zed@example.org")
    with pytest.raises(AdminError, match="no account"):
        await hosted.set_account_enabled("zed@example.org", True)


async def test_alias_and_catch_all_are_normalised(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    added = await hosted.add_alias("Info@Example.org", ["Alice@Example.org", "x@Elsewhere.NET"])
    assert added.alias == Alias("info@example.org", ("alice@example.org", "x@elsewhere.net"))
    assert added.missing == ()
    catch_all = (await hosted.add_alias("@EXAMPLE.org", ["alice@example.org"])).alias
    assert catch_all.is_catch_all and catch_all.source == "@example.org"
    assert [a.source for a in await hosted.list_aliases("example.org")] == [
        "@example.org",
        "info@example.org",
    ]


async def test_alias_targets_are_deduplicated_in_order(hosted: AdminService) -> None:
    alias = (await hosted.add_alias("team@example.org", ["b@x.example", "a@x.example", "B@x.example"])).alias
    assert alias.targets == ("b@x.example", "a@x.example")


async def test_alias_in_unknown_domain_is_refused(hosted: AdminService) -> None:
    with pytest.raises(AdminError, match=re.escape("example.net is not hosted here")):
        await hosted.add_alias("@example.net", ["a@example.org"])


@pytest.mark.parametrize(
    ("source", "targets", "message"),
    [
        ("team@example.org", [], "at least one target"),
        ("team@example.org", ["not an address"], "invalid target"),
        ("team@example.org", ["team@example.org"], "itself"),
        ("bad source@example.org", ["a@example.org"], "invalid alias address"),
        ("@not a domain", ["a@example.org"], "invalid domain"),
    ],
)
async def test_invalid_alias_is_refused(
    hosted: AdminService, source: str, targets: list[str], message: str
) -> None:
    with pytest.raises(AdminError, match=message):
        await hosted.add_alias(source, targets)


async def test_alias_removal(hosted: AdminService) -> None:
    await hosted.add_alias("@example.org", ["a@example.net"])
    assert await hosted.remove_alias("@Example.org") == "@example.org"
    assert await hosted.list_aliases() == []
    with pytest.raises(AdminError, match=re.escape("no alias @example.org")):
        await hosted.remove_alias("@example.org")


# alias loops and targets that match nothing (issue 11, point 19)


async def test_two_alias_loop_is_refused_with_the_loop_named(hosted: AdminService) -> None:
    await hosted.add_alias("a@example.org", ["b@example.org"], allow_missing=True)
    with pytest.raises(AdminError) as refused:
        await hosted.add_alias("b@example.org", ["a@example.org"])
    assert refused.value.message == ("alias b@example.org would make a loop: "
                                     "b@example.org → a@example.org → b@example.org")
    assert "never delivered" in refused.value.hint
    assert [a.source for a in await hosted.list_aliases()] == ["a@example.org"]


async def test_longer_loop_is_refused(hosted: AdminService) -> None:
    await hosted.add_alias("a@example.org", ["b@example.org"], allow_missing=True)
    await hosted.add_alias("b@example.org", ["c@example.org", "x@elsewhere.example"], allow_missing=True)
    with pytest.raises(AdminError, match=re.escape("c@example.org → a@example.org → b@example.org → c@example.org")):
        await hosted.add_alias("c@example.org", ["a@example.org"])


@pytest.mark.parametrize(
    ("source", "target", "shown"),
    [
        ("team@example.org", "team+list@example.org", "team+list@example.org (= team@example.org)"),
        ("@example.org", "nobody@example.org", "nobody@example.org (= @example.org)"),
    ],
    ids=["plus-address of itself", "catch-all to an address it catches"],
)
async def test_loop_through_plus_addressing_or_the_catch_all_is_refused(
    hosted: AdminService, source: str, target: str, shown: str
) -> None:
    with pytest.raises(AdminError, match=re.escape(f"would make a loop: {source} → {shown}")):
        await hosted.add_alias(source, [target], allow_missing=True)


async def test_loop_closed_by_an_accounts_tagged_address_is_refused(hosted: AdminService) -> None:
    """``alice+x`` is alice's own address; with alice gone it is taken by the alias of that name."""
    await hosted.add_account("alice@example.org", PASSWORD)
    await hosted.add_alias("team@example.org", ["alice+team@example.org"])  # alice's mailbox: no loop
    await hosted.remove_account("alice@example.org")
    with pytest.raises(AdminError, match=re.escape("alice@example.org → team@example.org → "
                                                   "alice+team@example.org (= alice@example.org)")):
        await hosted.add_alias("alice@example.org", ["team@example.org"])


async def test_chains_ending_at_an_account_or_remote_address_are_accepted(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    await hosted.add_alias("a@example.org", ["alice@example.org", "b@example.org"], allow_missing=True)
    await hosted.add_alias("b@example.org", ["alice+b@example.org", "out@elsewhere.example"])
    await hosted.add_alias("c@example.org", ["a@example.org", "b@example.org"])  # two paths to b: no loop
    await hosted.add_alias("@example.org", ["alice@example.org"])
    assert len(await hosted.list_aliases()) == 4


async def test_target_that_matches_nothing_is_refused_unless_allowed(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    with pytest.raises(AdminError, match=re.escape("bob@example.org is not an account or alias here")) as refused:
        await hosted.add_alias("team@example.org", ["alice@example.org", "bob@example.org", "x@elsewhere.example"])
    assert "hardmail account add bob@example.org" in refused.value.hint and "--allow-missing" in refused.value.hint
    assert await hosted.list_aliases() == []
    added = await hosted.add_alias("team@example.org", ["alice@example.org", "bob@example.org"], allow_missing=True)
    assert added.missing == ("bob@example.org",)
    assert (await hosted.add_alias("sales@example.org", ["team@example.org"])).missing == ()


async def test_a_catch_all_takes_targets_that_match_nothing_else(hosted: AdminService) -> None:
    await hosted.add_account("alice@example.org", PASSWORD)
    await hosted.add_alias("@example.org", ["alice@example.org"])
    assert (await hosted.add_alias("team@example.org", ["typo@example.org"])).missing == ()
