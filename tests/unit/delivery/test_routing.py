"""MX selection, null MX, implicit MX and routes, answered by a StaticResolver."""

from __future__ import annotations

import pytest

from hardmail.delivery.routing import MxHost, Router, RoutingError, order_mx, route_for
from hardmail.msgauth.dns import StaticResolver
from hardmail.store.ports_queue import Route

ZONE = {
    ("d.example", "MX"): ["20 b.d.example.", "10 a.d.example.", "10 c.d.example."],
    ("a.d.example", "A"): ["192.0.2.1"],
    ("a.d.example", "AAAA"): ["2001:db8::1"],
    ("b.d.example", "A"): ["192.0.2.2"],
    ("c.d.example", "A"): ["192.0.2.3"],
    ("null.example", "MX"): ["0 ."],
    ("bare.example", "A"): ["192.0.2.9"],
    ("slow.example", "MX"): "TIMEOUT",
    ("relay.example.net", "A"): ["198.51.100.1"],
}


def _reverse(hosts: list[MxHost]) -> None:
    hosts.reverse()


async def test_hosts_come_in_preference_order_with_equal_ones_shuffled() -> None:
    destination = await Router(StaticResolver(ZONE), shuffle=_reverse).destination("d.example")
    assert [h.name for h in destination.hosts] == ["c.d.example", "a.d.example", "b.d.example"]
    assert destination.hosts[1].addresses == ("2001:db8::1", "192.0.2.1")  # IPv6 and IPv4


async def test_null_mx_is_a_permanent_failure() -> None:
    with pytest.raises(RoutingError) as caught:
        await Router(StaticResolver(ZONE)).destination("null.example")
    assert (caught.value.temporary, caught.value.status) == (False, "5.1.10")


async def test_no_mx_means_the_domain_itself() -> None:
    destination = await Router(StaticResolver(ZONE)).destination("bare.example")
    assert [(h.name, h.addresses) for h in destination.hosts] == [("bare.example", ("192.0.2.9",))]


async def test_dns_trouble_is_temporary_and_a_missing_domain_permanent() -> None:
    router = Router(StaticResolver(ZONE))
    with pytest.raises(RoutingError) as slow:
        await router.destination("slow.example")
    with pytest.raises(RoutingError) as missing:
        await router.destination("nowhere.example")
    assert (slow.value.temporary, missing.value.temporary) == (True, False)


def test_the_most_specific_route_wins() -> None:
    routes = [Route("*", "smart"), Route("*.example.org", "wild"), Route("x.example.org", "exact")]
    assert route_for(routes, "x.example.org").host == "exact"  # type: ignore[union-attr]
    assert route_for(routes, "a.b.example.org").host == "wild"  # type: ignore[union-attr]
    assert route_for(routes, "example.org").host == "smart"  # type: ignore[union-attr]
    assert route_for(routes[1:], "other.example") is None


async def test_a_route_replaces_the_mx_lookup() -> None:
    route = Route("*", "relay.example.net", 587, "starttls")
    destination = await Router(StaticResolver(ZONE)).destination("d.example", [route])
    assert (destination.route, destination.port) == (route, 587)
    assert destination.hosts == (MxHost("relay.example.net", 0, ("198.51.100.1",)),)


def test_order_mx_keeps_preferences_apart() -> None:
    hosts = [MxHost("z", 30), MxHost("y", 10), MxHost("x", 20)]
    assert [h.name for h in order_mx(hosts, shuffle=lambda _h: None)] == ["y", "x", "z"]
