"""Resolving a disabled account does the same store look-ups as an unknown address (no timing tell)."""

from __future__ import annotations

import pytest

from hardmail.core.address import Address
from hardmail.delivery.recipients import resolve_recipient
from hardmail.store.ports import Account, Alias, Domain


class RecordingStore:
    """Just what recipient resolution reads, recording every look-up by its kind (not its key)."""

    def __init__(self, aliases: dict[str, Alias] | None = None) -> None:
        self.accounts = {"carol@example.test": Account("carol@example.test", "x", enabled=False),
                         "alice@example.test": Account("alice@example.test", "x")}
        self.aliases = aliases or {}
        self.calls: list[str] = []

    async def get_domain(self, name: str) -> Domain | None:
        self.calls.append("domain")
        return Domain(name) if name == "example.test" else None

    async def get_account(self, address: str) -> Account | None:
        self.calls.append("account")
        return self.accounts.get(address)

    async def get_alias(self, source: str) -> Alias | None:
        self.calls.append("alias")
        return self.aliases.get(source)


async def lookups(store: RecordingStore, local: str, hide: bool) -> tuple[str, list[str]]:
    store.calls.clear()
    resolution = await resolve_recipient(store, Address(local, "example.test"), "+",  # type: ignore[arg-type]
                                         disabled_as_unknown=hide)
    return resolution.kind, list(store.calls)


@pytest.mark.parametrize("tagged", [False, True])
async def test_disabled_and_unknown_take_the_same_look_ups(tagged: bool) -> None:
    store = RecordingStore()
    tag = "+news" if tagged else ""
    unknown_kind, unknown_calls = await lookups(store, f"nobody{tag}", hide=True)
    disabled_kind, disabled_calls = await lookups(store, f"carol{tag}", hide=True)
    assert (unknown_kind, disabled_kind) == ("unknown", "disabled")  # the kind stays true, for the log
    assert disabled_calls == unknown_calls


async def test_revealing_stops_at_the_disabled_account() -> None:
    kind, calls = await lookups(RecordingStore(), "carol", hide=False)
    assert (kind, calls) == ("disabled", ["domain", "account"])


async def test_hidden_disabled_account_falls_to_the_catch_all_like_an_unknown_one() -> None:
    store = RecordingStore({"@example.test": Alias("@example.test", ("alice@example.test",))})
    resolved = await resolve_recipient(store, Address("carol", "example.test"), disabled_as_unknown=True)  # type: ignore[arg-type]
    assert (resolved.kind, resolved.mailboxes) == ("local", ("alice@example.test",))
