"""DANE-TA chain checks (RFC 7672 3.1.2, 3.2.2): anchor, signatures, CA flags, dates, names; chain access."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from dataclasses import dataclass
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.delivery import dane, outbound
from hardmail.delivery.dane import chain_access_available, dane_authenticates, dane_ta_authenticates, peer_chain
from hardmail.delivery.outbound import OutboundDeliverer, OutboundSettings
from hardmail.delivery.routing import MxHost
from hardmail.delivery.tls_policy import Tlsa
from hardmail.msgauth.dns import StaticResolver

MX = ("mx.example.org",)


@dataclass
class Pki:
    root: bytes
    intermediate: bytes
    leaf: bytes

    @property
    def chain(self) -> tuple[bytes, ...]:
        return self.leaf, self.intermediate, self.root


def _der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("mx.example.org", "*.pool.example.org")
    return Pki(_der(root.cert_pem.bytes()), _der(intermediate.cert_pem.bytes()),
               _der(leaf.cert_chain_pems[0].bytes()))


def spki_sha256(der: bytes) -> bytes:
    key = x509.load_der_x509_certificate(der).public_key()
    return hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def test_a_ta_record_for_the_root_or_the_intermediate_authenticates(pki: Pki) -> None:
    assert dane_ta_authenticates([Tlsa(2, 1, 1, spki_sha256(pki.root))], pki.chain, MX)
    assert dane_ta_authenticates([Tlsa(2, 0, 2, hashlib.sha512(pki.intermediate).digest())], pki.chain, MX)
    assert dane_ta_authenticates([Tlsa(2, 0, 0, pki.root)], pki.chain, MX)
    assert dane_ta_authenticates([Tlsa(2, 1, 1, spki_sha256(pki.root))], pki.chain, ("a.pool.example.org",))


def test_a_mismatching_record_or_an_ee_record_does_not(pki: Pki) -> None:
    assert not dane_ta_authenticates([Tlsa(2, 1, 1, b"\0" * 32)], pki.chain, MX)
    assert not dane_ta_authenticates([Tlsa(3, 1, 1, spki_sha256(pki.root))], pki.chain, MX)
    assert not dane_ta_authenticates([], pki.chain, MX)


def test_the_leaf_is_never_a_trust_anchor(pki: Pki) -> None:
    assert not dane_ta_authenticates([Tlsa(2, 1, 1, spki_sha256(pki.leaf))], pki.chain, MX)
    assert not dane_ta_authenticates([Tlsa(2, 1, 1, spki_sha256(pki.leaf))], (pki.leaf,), MX)


def test_the_leaf_must_carry_the_mx_name(pki: Pki) -> None:
    record = [Tlsa(2, 1, 1, spki_sha256(pki.root))]
    assert not dane_ta_authenticates(record, pki.chain, ("other.example.org",))
    assert not dane_ta_authenticates(record, pki.chain, ("a.b.pool.example.org",))  # * is one label


def test_every_link_up_to_the_anchor_must_be_signed_by_the_next(pki: Pki) -> None:
    record = [Tlsa(2, 1, 1, spki_sha256(pki.root))]
    assert not dane_ta_authenticates(record, (pki.leaf, pki.root), MX)  # the intermediate is missing
    stranger = _der(trustme.CA().cert_pem.bytes())
    assert not dane_ta_authenticates([Tlsa(2, 0, 0, stranger)], (pki.leaf, stranger), MX)


def test_a_leaf_cannot_issue_for_the_path(pki: Pki) -> None:
    """A certificate without the CA flag is no issuer, even when it matches the TLSA record."""
    other = trustme.CA().issue_cert("mx.example.org")
    other_leaf = _der(other.cert_chain_pems[0].bytes())
    assert not dane_ta_authenticates([Tlsa(2, 0, 0, other_leaf)], (pki.leaf, other_leaf), MX)


def test_the_validity_dates_must_hold(pki: Pki) -> None:
    record = [Tlsa(2, 1, 1, spki_sha256(pki.root))]
    leaf = x509.load_der_x509_certificate(pki.leaf)
    day = datetime.timedelta(days=1)
    assert dane_ta_authenticates(record, pki.chain, MX, datetime.datetime.now(datetime.UTC))
    assert not dane_ta_authenticates(record, pki.chain, MX, leaf.not_valid_after_utc + day)
    assert not dane_ta_authenticates(record, pki.chain, MX, leaf.not_valid_before_utc - day)


class _FakeCertificate:
    def __init__(self, der: bytes) -> None:
        self.der = der

    def public_bytes(self, encoding: int) -> bytes:
        assert encoding == 2  # _ssl.ENCODING_DER
        return self.der


class _FakeTls:
    """Stands in for ssl.SSLObject: the leaf via getpeercert, the chain via the private ``_sslobj``."""

    def __init__(self, chain: tuple[bytes, ...] | None) -> None:
        self.chain = chain
        self._sslobj = self

    def getpeercert(self, binary_form: bool) -> bytes | None:
        return self.chain[0] if self.chain else None

    def get_unverified_chain(self) -> list[_FakeCertificate] | None:
        return [_FakeCertificate(der) for der in self.chain] if self.chain else None


def test_the_private_chain_api_is_read_as_der(pki: Pki) -> None:
    tls: Any = _FakeTls(pki.chain)
    assert peer_chain(tls) == pki.chain
    assert peer_chain(object()) is None  # type: ignore[arg-type]
    assert chain_access_available()  # CPython 3.10 and newer


def test_dane_authenticates_by_ee_or_ta_record(pki: Pki) -> None:
    tls: Any = _FakeTls(pki.chain)
    assert dane_authenticates((Tlsa(3, 1, 1, spki_sha256(pki.leaf)),), tls, MX)
    assert dane_authenticates((Tlsa(2, 1, 1, spki_sha256(pki.root)),), tls, MX)
    assert not dane_authenticates((Tlsa(2, 1, 1, spki_sha256(pki.root)),), tls, ("other.example.org",))
    assert not dane_authenticates((Tlsa(2, 1, 1, spki_sha256(pki.root)),), None, MX)
    assert not dane_authenticates((Tlsa(2, 1, 1, spki_sha256(pki.root)),), _FakeTls(None), MX)  # type: ignore[arg-type]


async def test_without_chain_access_ta_records_are_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS is still required (RFC 7672 2.2), but the certificate cannot be checked against DANE-TA."""
    zone = {("_25._tcp.mx.example.org", "TLSA"): ["2 1 1 " + "ab" * 32, "3 1 1 " + "cd" * 32]}
    deliverer = OutboundDeliverer(OutboundSettings("me.example"), StaticResolver(zone, authenticated=True), None,
                                  lambda t: t)
    host = MxHost("mx.example.org", 10, ("192.0.2.1",))
    both = await deliverer._dane_plan(host, 25)
    assert both is not None and both.verify == "dane" and [r.usage for r in both.tlsa] == [2, 3]
    monkeypatch.setattr(outbound, "chain_access_available", lambda: False)
    ee_only = await deliverer._dane_plan(host, 25)
    assert ee_only is not None and ee_only.verify == "dane" and [r.usage for r in ee_only.tlsa] == [3]
    zone[("_25._tcp.mx.example.org", "TLSA")] = ["2 1 1 " + "ab" * 32]
    unusable = await deliverer._dane_plan(host, 25)
    assert unusable is not None and unusable.starttls == "require" and unusable.verify == "none"
    assert dane.DANE_TA == 2
