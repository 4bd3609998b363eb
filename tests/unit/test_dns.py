"""The resolver seam: the static table resolver, and the dnspython one against a DNS server on loopback."""

from __future__ import annotations

from hardmail.msgauth.dns import DnsPythonResolver, StaticResolver
from support.dns_server import LoopbackDnsServer


async def test_static_resolver_statuses() -> None:
    resolver = StaticResolver({("example.org", "MX"): ["10 mx.example.org."], ("slow.example", "A"): "TIMEOUT"})
    mx = await resolver.resolve("Example.ORG.", "MX")
    assert mx.ok and mx.records[0].preference == 10 and str(mx.records[0].exchange) == "mx.example.org."
    assert (await resolver.resolve("example.org", "TXT")).status == "nodata"
    assert (await resolver.resolve("nothing.example", "A")).status == "nxdomain"
    assert (await resolver.resolve("slow.example", "A")).status == "tempfail"


async def test_dnspython_resolver_against_loopback_server() -> None:
    zone = {("example.org", "MX"): ["10 mx1.example.org.", "20 mx2.example.org."],
            ("example.org", "TXT"): ['"v=spf1 " "-all"'], ("mx1.example.org", "A"): ["127.0.0.2"]}
    with LoopbackDnsServer(zone) as server:
        resolver = DnsPythonResolver([server.host], port=server.port, timeout=5)
        mx = await resolver.resolve("example.org", "MX")
        assert sorted(r.preference for r in mx.records) == [10, 20]
        assert (await resolver.resolve("example.org", "TXT")).texts() == ["v=spf1 -all"]
        assert (await resolver.resolve("missing.example.org", "A")).status == "nxdomain"
        assert (await resolver.resolve("mx1.example.org", "AAAA")).status == "nodata"


async def test_the_loopback_server_sets_the_ad_flag_only_when_asked() -> None:
    zone = {("_25._tcp.mx.example.org", "TLSA"): ["3 1 1 " + "ab" * 32]}
    for authenticated in (False, True):
        with LoopbackDnsServer(zone, authenticated=authenticated) as server:
            resolver = DnsPythonResolver([server.host], port=server.port, timeout=5)
            answer = await resolver.resolve("_25._tcp.mx.example.org", "TLSA")
            assert answer.ok and answer.authenticated is authenticated
            assert bytes(answer.records[0].cert) == b"\xab" * 32
