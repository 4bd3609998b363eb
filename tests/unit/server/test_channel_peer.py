"""Channel.peer(): the address every access decision keys on comes out in one canonical form."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hardmail.server.channel import Channel


class FakeTransport(asyncio.Transport):
    def __init__(self, peername: Any) -> None:
        super().__init__()
        self.peername = peername

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peername if name == "peername" else default


@pytest.mark.parametrize(("peername", "expected"), [
    (("::ffff:192.0.2.5", 4000, 0, 0), ("192.0.2.5", 4000)),
    (("192.0.2.5", 4000), ("192.0.2.5", 4000)),
    (("2001:db8::5", 4000, 0, 0), ("2001:db8::5", 4000)),
    (None, ("unknown", 0)),
])
async def test_peer_unmaps_ipv4_mapped_addresses(peername: Any, expected: tuple[str, int]) -> None:
    channel = Channel()
    channel.connection_made(FakeTransport(peername))
    assert channel.peer() == expected


async def test_peer_named_by_a_proxy_is_unmapped_too() -> None:
    channel = Channel()
    channel.connection_made(FakeTransport(("127.0.0.1", 1)))
    channel.set_real_peer(("::ffff:203.0.113.9", 25))
    assert channel.peer() == ("203.0.113.9", 25)
