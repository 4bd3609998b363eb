"""MTA-STS records, policies, MX matching and caching; DANE TLSA matching."""

from __future__ import annotations

import hashlib
import ssl

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.core.clock import FakeClock
from hardmail.delivery.tls_policy import (
    MtaSts,
    PolicyError,
    Tlsa,
    mx_matches,
    parse_sts_policy,
    parse_sts_record,
    tlsa_matches,
    tlsa_records,
)
from hardmail.msgauth.dns import StaticResolver

POLICY = "version: STSv1\nmode: enforce\nmx: mx1.example.org\nmx: *.backup.example.org\nmax_age: 86400\n"


def test_mx_patterns_match_exactly_or_one_leftmost_label() -> None:
    assert mx_matches("mx1.example.org", "MX1.example.org.")
    assert mx_matches("*.example.org", "mx2.example.org")
    assert not mx_matches("*.example.org", "a.b.example.org")
    assert not mx_matches("*.example.org", "example.org")


def test_the_sts_record_names_the_policy_id() -> None:
    assert parse_sts_record(["v=STSv1; id=20240101T000000;"]) == "20240101T000000"
    assert parse_sts_record(["v=spf1 -all"]) is None
    assert parse_sts_record(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # RFC 8461 3.1: exactly one


def test_a_policy_is_parsed_and_checked() -> None:
    policy = parse_sts_policy(POLICY, "1", 100.0)
    assert (policy.mode, policy.mx, policy.expires_at()) == (
        "enforce", ("mx1.example.org", "*.backup.example.org"), 86500.0)
    assert policy.allows("b1.backup.example.org") and not policy.allows("evil.example.net")
    with pytest.raises(PolicyError):
        parse_sts_policy("version: STSv1\nmode: enforce\nmax_age: 10\n", "1", 0.0)


class _Settings(dict[str, str]):
    async def get_setting(self, key: str) -> str | None:
        return self.get(key)

    async def set_setting(self, key: str, value: str) -> None:
        self[key] = value


class _Fetcher:
    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, domain: str) -> str:
        self.calls += 1
        return POLICY


async def test_a_policy_is_cached_until_its_id_changes_or_it_expires() -> None:
    zone = {("_mta-sts.example.org", "TXT"): ['"v=STSv1; id=1"']}
    fetcher, clock, cache = _Fetcher(), FakeClock(), _Settings()
    sts = MtaSts(StaticResolver(zone), fetcher, clock, cache)
    assert (await sts.policy("example.org")).mode == "enforce"  # type: ignore[union-attr]
    await sts.policy("example.org")
    assert fetcher.calls == 1
    zone[("_mta-sts.example.org", "TXT")] = ['"v=STSv1; id=2"']
    await sts.policy("example.org")
    assert fetcher.calls == 2
    del zone[("_mta-sts.example.org", "TXT")]
    assert await sts.policy("example.org") is not None  # the record vanished: the cache still applies
    clock.advance(86401)
    assert await sts.policy("example.org") is None


@pytest.fixture(scope="module")
def certificate_der() -> bytes:
    pem = trustme.CA().issue_cert("mx.example.org").cert_chain_pems[0].bytes()
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_dane_ee_records_match_the_certificate_or_its_key(certificate_der: bytes) -> None:
    spki = x509.load_der_x509_certificate(certificate_der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert tlsa_matches((Tlsa(3, 1, 1, hashlib.sha256(spki).digest()),), certificate_der)
    assert tlsa_matches((Tlsa(3, 0, 2, hashlib.sha512(certificate_der).digest()),), certificate_der)
    assert tlsa_matches((Tlsa(3, 0, 0, certificate_der),), certificate_der)
    assert not tlsa_matches((Tlsa(3, 1, 1, b"\0" * 32),), certificate_der)


async def test_tlsa_records_count_only_when_dnssec_validated(certificate_der: bytes) -> None:
    digest = hashlib.sha256(certificate_der).hexdigest()
    zone = {("_25._tcp.mx.example.org", "TLSA"): [f"3 0 1 {digest}", f"2 0 1 {digest}", f"1 0 1 {digest}",
                                                  f"3 4 1 {digest}"]}
    assert await tlsa_records(StaticResolver(zone), "mx.example.org", 25) == (False, ())
    applies, usable = await tlsa_records(StaticResolver(zone, authenticated=True), "mx.example.org", 25)
    # DANE-EE and DANE-TA are usable; PKIX usages and unknown selectors are not (RFC 7672 3.1.3)
    assert applies and usable == (Tlsa(3, 0, 1, bytes.fromhex(digest)), Tlsa(2, 0, 1, bytes.fromhex(digest)))
