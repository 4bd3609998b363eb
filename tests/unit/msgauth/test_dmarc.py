"""DMARC: organizational domains from the public suffix list, alignment, discovery and the result table."""

from __future__ import annotations

import pytest

from hardmail.mime.addresses import MAX_AUTHOR_DOMAINS, Author
from hardmail.msgauth.dkim import DkimVerification
from hardmail.msgauth.dmarc import (
    DmarcRecord,
    aligned,
    discover,
    evaluate,
    evaluate_author,
    organizational_domain,
    parse_record,
)
from hardmail.msgauth.dns import StaticResolver
from hardmail.msgauth.spf import SpfResult


@pytest.mark.parametrize(("domain", "organizational"), [
    ("example.com", "example.com"),
    ("mail.example.com", "example.com"),
    ("a.b.example.co.uk", "example.co.uk"),
    ("example.co.uk", "example.co.uk"),
    ("user.github.io", "user.github.io"),  # a private-section suffix
    ("deep.user.github.io", "user.github.io"),
    ("MAIL.Example.COM.", "example.com"),
])
def test_organizational_domain(domain: str, organizational: str) -> None:
    assert organizational_domain(domain) == organizational


@pytest.mark.parametrize(("identifier", "from_domain", "mode", "expected"), [
    ("example.com", "example.com", "s", True),
    ("example.com", "example.com", "r", True),
    ("mail.example.com", "example.com", "r", True),
    ("mail.example.com", "example.com", "s", False),
    ("example.com", "news.example.com", "r", True),
    ("example.com", "news.example.com", "s", False),
    ("a.example.co.uk", "b.example.co.uk", "r", True),
    ("example.co.uk", "other.co.uk", "r", False),  # the public suffix is not a shared organization
    ("one.github.io", "two.github.io", "r", False),
    ("example.net", "example.com", "r", False),
    ("", "example.com", "r", False),
])
def test_alignment_table(identifier: str, from_domain: str, mode: str, expected: bool) -> None:
    assert aligned(identifier, from_domain, mode) is expected  # type: ignore[arg-type]


def test_record_parsing() -> None:
    record = parse_record("v=DMARC1; p=reject; sp=none; adkim=s; aspf=s; pct=50; rua=mailto:d@example.com")
    assert record == DmarcRecord("reject", "none", "s", "s", 50)
    assert parse_record("v=DMARC1; p=quarantine") == DmarcRecord("quarantine", "quarantine")
    assert parse_record("v=DMARC1; p=bogus") is None
    assert parse_record("p=reject; v=DMARC1") is None  # RFC 7489 6.4: v= comes first
    assert parse_record("v=spf1 -all") is None


def _dkim(domain: str, result: str = "pass") -> DkimVerification:
    return DkimVerification(result, domain, "s1", "rsa-sha256")  # type: ignore[arg-type]


def _spf(domain: str, result: str = "pass") -> SpfResult:
    return SpfResult(result, "mailfrom", domain)  # type: ignore[arg-type]


STRICT = DmarcRecord("reject", "quarantine", adkim="s", aspf="s")
RELAXED = DmarcRecord("reject", "quarantine")


@pytest.mark.parametrize(("record", "spf", "dkim", "result"), [
    (RELAXED, _spf("bounce.example.com"), [], "pass"),  # relaxed SPF alignment
    (STRICT, _spf("bounce.example.com"), [], "fail"),
    (STRICT, _spf("example.com"), [], "pass"),
    (RELAXED, None, [_dkim("mail.example.com")], "pass"),
    (STRICT, None, [_dkim("mail.example.com")], "fail"),
    (RELAXED, _spf("example.com", "fail"), [_dkim("example.com", "fail")], "fail"),
    (RELAXED, _spf("other.net"), [_dkim("other.net")], "fail"),  # passes, but not aligned
    (RELAXED, _spf("other.net"), [_dkim("other.net"), _dkim("example.com")], "pass"),
])
def test_evaluation_table(record: DmarcRecord, spf: SpfResult | None, dkim: list[DkimVerification],
                          result: str) -> None:
    verdict = evaluate("example.com", record, "example.com", spf, dkim)
    assert verdict.result == result
    assert verdict.policy == ("reject" if result == "fail" else "none")


def test_subdomain_policy_and_pct_sampling() -> None:
    verdict = evaluate("news.example.com", RELAXED, "example.com", None, [])
    assert (verdict.result, verdict.policy) == ("fail", "quarantine")  # sp= of the organizational domain
    sampled_out = DmarcRecord("reject", "reject", pct=10)
    assert evaluate("example.com", sampled_out, "example.com", None, [], sample=0.5).policy == "quarantine"
    assert evaluate("example.com", sampled_out, "example.com", None, [], sample=0.05).policy == "reject"
    assert evaluate("example.com", None, "", None, []).result == "none"


@pytest.mark.parametrize(("spf", "dkim", "result"), [
    (_spf("example.com", "fail"), [_dkim("example.com", "temperror")], "temperror"),  # aligned key look-up failed
    (_spf("bounce.example.com", "temperror"), [_dkim("other.net", "fail")], "temperror"),  # aligned SPF
    (_spf("other.net", "temperror"), [_dkim("other.net", "temperror")], "fail"),  # could never have aligned
    (_spf("example.com", "temperror"), [_dkim("example.com")], "pass"),  # an aligned pass decides
])
def test_aligned_temporary_errors_are_not_a_permanent_fail(spf: SpfResult, dkim: list[DkimVerification],
                                                          result: str) -> None:
    verdict = evaluate("example.com", RELAXED, "example.com", spf, dkim)
    assert verdict.result == result
    if result == "temperror":
        assert verdict.policy == "reject"  # the policy a fail would have had, so the caller can defer


async def test_discovery_falls_back_to_the_organizational_domain() -> None:
    resolver = StaticResolver({("_dmarc.example.com", "TXT"): ['"v=DMARC1; p=reject"']})
    record, where, status = await discover(resolver, "news.example.com")
    assert (record is not None and record.policy, where, status) == ("reject", "example.com", "ok")
    assert ("_dmarc.news.example.com", "TXT") in resolver.queries
    timeout = StaticResolver({("_dmarc.example.org", "TXT"): "TIMEOUT"})
    assert (await discover(timeout, "example.org"))[2] == "tempfail"
    assert (await discover(StaticResolver({}), "example.net"))[2] == "none"


_POLICIES = StaticResolver({
    ("_dmarc.bank.example", "TXT"): ['"v=DMARC1; p=reject"'],
    ("_dmarc.shop.example", "TXT"): ['"v=DMARC1; p=quarantine"'],
    ("_dmarc.slow.example", "TXT"): "TIMEOUT",
})
_BANK_SIGNED = (DkimVerification("pass", "bank.example", "s", "rsa-sha256"),)


async def test_one_author_domain_is_evaluated_as_usual() -> None:
    passed = await evaluate_author(_POLICIES, Author(("bank.example",)), None, _BANK_SIGNED, 0.0)
    failed = await evaluate_author(_POLICIES, Author(("bank.example",)), None, (), 0.0)
    assert (passed.result, failed.result, failed.policy) == ("pass", "fail", "reject")


async def test_an_ambiguous_from_fails_under_the_strictest_policy_even_when_signed() -> None:
    """RFC 7489 6.6.1: a From: that cannot be read one way is no pass, whatever aligns."""
    ambiguous = Author(("shop.example", "bank.example", "nodmarc.example"), "2 From fields")
    result = await evaluate_author(_POLICIES, ambiguous, None, _BANK_SIGNED, 0.0)
    assert (result.result, result.policy, result.from_domain) == ("fail", "reject", "bank.example")
    assert "2 From fields" in result.reason and not result.no_author


async def test_several_domains_in_one_from_need_every_one_to_pass() -> None:
    both = Author(("bank.example", "shop.example"))
    result = await evaluate_author(_POLICIES, both, None, _BANK_SIGNED, 0.0)
    assert (result.result, result.policy, result.from_domain) == ("fail", "quarantine", "shop.example")
    signed_both = (*_BANK_SIGNED, DkimVerification("pass", "shop.example", "s", "rsa-sha256"))
    assert (await evaluate_author(_POLICIES, both, None, signed_both, 0.0)).result == "pass"


async def test_no_author_domain_or_too_many_is_refused_and_a_timeout_is_temperror() -> None:
    assert (await evaluate_author(_POLICIES, Author((), "0 From fields"), None, (), 0.0)).no_author
    assert (await evaluate_author(_POLICIES, Author(("x.org",), "", True), None, (), 0.0)).no_author
    many = Author(tuple(f"d{i}.example" for i in range(MAX_AUTHOR_DOMAINS + 1)), "many")
    assert (await evaluate_author(StaticResolver({}), many, None, (), 0.0)).no_author
    slow = await evaluate_author(_POLICIES, Author(("slow.example", "nodmarc.example")), None, (), 0.0)
    assert slow.result == "temperror"
    assert (await evaluate_author(_POLICIES, Author(("nodmarc.example",), "x"), None, (), 0.0)).result == "none"
