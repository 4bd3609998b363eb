"""The storage message authentication needs: greylisting triplets and automatically whitelisted networks."""

from __future__ import annotations

from typing import Protocol

from hardmail.policy.greylist import TripletState


class GreylistStore(Protocol):
    async def get_triplet(self, key: str) -> TripletState | None:
        """The stored state of a triplet (see ``policy.greylist.Triplet.key``), expired or not."""
        ...

    async def save_triplet(self, key: str, network: str, state: TripletState) -> None:
        """Insert or replace a triplet's state."""
        ...

    async def count_confirmed(self, network: str, now: float) -> int:
        """Confirmed, unexpired triplets of a client network."""
        ...

    async def whitelist_network(self, network: str, until: float) -> None: ...

    async def network_whitelisted(self, network: str, now: float) -> bool: ...

    async def purge_expired(self, now: float) -> int:
        """Remove expired triplets and whitelist entries; returns how many rows went."""
        ...
