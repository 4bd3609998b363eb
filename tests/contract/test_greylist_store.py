"""GreylistStore contract: triplets and network whitelist entries round-trip and expire, on every backend."""

from __future__ import annotations

import secrets

from hardmail.policy.greylist import TripletState
from hardmail.store.ports import Store

NOW = 1_800_000_000.0


def _network() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.0/24"


async def test_triplet_round_trip_and_replace(store: Store) -> None:
    network = _network()
    key = f"{network}|a@example.org|b@example.net"
    greylist = store.msgauth
    assert await greylist.get_triplet(key) is None
    first = TripletState(NOW, NOW, NOW + 86400)
    await greylist.save_triplet(key, network, first)
    assert await greylist.get_triplet(key) == first
    confirmed = TripletState(NOW, NOW + 600, NOW + 600 + 36 * 86400, confirmed=True, passes=1)
    await greylist.save_triplet(key, network, confirmed)
    assert await greylist.get_triplet(key) == confirmed
    assert await greylist.count_confirmed(network, NOW + 700) == 1
    assert await greylist.count_confirmed(network, NOW + 40 * 86400) == 0


async def test_network_whitelist_and_purge(store: Store) -> None:
    network = _network()
    greylist = store.msgauth
    assert not await greylist.network_whitelisted(network, NOW)
    await greylist.whitelist_network(network, NOW + 100)
    assert await greylist.network_whitelisted(network, NOW + 50)
    assert not await greylist.network_whitelisted(network, NOW + 100)
    key = f"{network}|x@example.org|y@example.net"
    await greylist.save_triplet(key, network, TripletState(NOW, NOW, NOW + 10))
    assert await greylist.purge_expired(NOW + 200) >= 2
    assert await greylist.get_triplet(key) is None
