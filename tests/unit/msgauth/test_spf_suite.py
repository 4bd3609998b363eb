"""The OpenSPF RFC 7208 test suite against our SPF evaluation, its zones served by a fake resolver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.name
import dns.rdataclass
import dns.rdatatype
import pytest
import yaml
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from hardmail.msgauth.dns import DnsAnswer
from hardmail.msgauth.spf import check_host

SUITE = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "spf" / "rfc7208-tests.yml"
IN = dns.rdataclass.IN
WAIVED: dict[str, str] = {}  # test name -> RFC erratum that justifies the waiver (none needed)


def _txt(value: Any, rdtype: dns.rdatatype.RdataType) -> TXT:
    strings = [value] if isinstance(value, str) else list(value)
    return TXT(IN, rdtype, [s.encode("utf-8") for s in strings])


def _rdata(kind: str, value: Any) -> Any:
    if kind in ("TXT", "SPF"):
        return _txt(value, dns.rdatatype.TXT)
    if kind == "A":
        return A(IN, dns.rdatatype.A, value)
    if kind == "AAAA":
        return AAAA(IN, dns.rdatatype.AAAA, value)
    if kind == "MX":
        return MX(IN, dns.rdatatype.MX, value[0], dns.name.from_text(value[1]))
    if kind == "PTR":
        return PTR(IN, dns.rdatatype.PTR, dns.name.from_text(value))
    if kind == "CNAME":
        return CNAME(IN, dns.rdatatype.CNAME, dns.name.from_text(value))
    raise AssertionError(f"unknown record type {kind}")


def _records(entries: list[Any]) -> dict[str, Any]:
    """One name's records by type, with SPF copied to TXT unless TXT is given (the suite's convention)."""
    by_type: dict[str, Any] = {}
    for entry in entries:
        if entry == "TIMEOUT":  # types without records time out
            by_type["TIMEOUT"] = True
            continue
        ((kind, value),) = entry.items()
        by_type.setdefault(kind, [])
        if value not in ("NONE", []):
            by_type[kind].append(_rdata(kind, value))
    if "TXT" not in by_type and "SPF" in by_type:
        by_type["TXT"] = by_type["SPF"]
    return by_type


class SuiteResolver:
    """Serves a scenario's zonedata like a recursive resolver: CNAMEs followed, TIMEOUT never answered."""

    def __init__(self, zonedata: dict[str, list[Any]]) -> None:
        self.zone = {name.lower(): _records(entries) for name, entries in zonedata.items()}

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        for _ in range(10):
            records = self.zone.get(name.rstrip(".").lower())
            if records is None:
                return DnsAnswer("nxdomain")
            if not records.get(rdtype) and "TIMEOUT" in records:
                return DnsAnswer("tempfail", detail="timeout")
            if rdtype in records or "CNAME" not in records:
                found = tuple(records.get(rdtype, ()))
                return DnsAnswer("ok" if found else "nodata", found)
            name = records["CNAME"][0].target.to_text()
        return DnsAnswer("tempfail", detail="CNAME loop")  # what a recursive resolver's SERVFAIL becomes


def _cases() -> list[Any]:
    cases = []
    for scenario in yaml.safe_load_all(SUITE.read_text()):
        if not scenario:
            continue
        for test_name, test in scenario["tests"].items():
            marks = [pytest.mark.skip(reason=WAIVED[test_name])] if test_name in WAIVED else []
            cases.append(pytest.param(scenario["zonedata"], test, id=test_name, marks=marks))
    return cases


CASES = _cases()


def test_the_suite_is_complete() -> None:
    assert len(CASES) == 203


@pytest.mark.parametrize(("zonedata", "test"), CASES)
async def test_openspf_rfc7208(zonedata: dict[str, list[Any]], test: dict[str, Any]) -> None:
    resolver = SuiteResolver(zonedata)
    result = await check_host(resolver, test["host"], test["mailfrom"], test["helo"],
                              default_explanation="DEFAULT")  # the suite's convention
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert result.result in expected, result
    if "explanation" in test and result.result == "fail":
        assert result.explanation == test["explanation"]
