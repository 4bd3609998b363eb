"""DANE certificate checks after the TLS handshake (RFC 7672 3.1, RFC 7671 5).

* DANE-EE (usage 3): the server's own certificate or key matches a TLSA record; no chain, dates or
  names are checked (RFC 7672 3.1.1).
* DANE-TA (usage 2): a certificate the server presented *above* its leaf matches a TLSA record and is
  the trust anchor; the chain from the leaf up to it must verify (each certificate signed by the next,
  every issuer a CA), every certificate on that path must be within its validity dates, and the leaf
  must carry the MX host name, which is the TLSA base domain (RFC 7672 3.1.2, 3.2.2, 3.2.3).

Reading the presented chain needs a private CPython API on Python 3.11 (see :func:`peer_chain`); when
it is missing, DANE-TA records count as unusable (:func:`chain_access_available`).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import ssl
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.delivery.tls_policy import Tlsa, mx_matches

DANE_TA, DANE_EE = 2, 3
_DER = 2  # CPython's _ssl.ENCODING_DER (X509_FILETYPE_ASN1), for _ssl.Certificate.public_bytes


def chain_access_available() -> bool:
    """Whether :func:`peer_chain` can work on this Python (public from 3.13, private from 3.10)."""
    private = getattr(ssl, "_ssl", None)
    socket_type = getattr(private, "_SSLSocket", None)
    return hasattr(ssl.SSLObject, "get_unverified_chain") or hasattr(socket_type, "get_unverified_chain")


def peer_chain(tls: ssl.SSLObject) -> tuple[bytes, ...] | None:
    """The certificates the server presented, leaf first, in DER; None when they cannot be read.

    Python 3.11's public ssl API only returns the leaf (``getpeercert``). CPython 3.10 to 3.12 have
    the private ``SSLObject._sslobj.get_unverified_chain()`` (OpenSSL's SSL_get_peer_cert_chain),
    which returns ``_ssl.Certificate`` objects; Python 3.13 makes it public, returning DER bytes.
    "Unverified" is what DANE needs: the chain is checked here, against the TLSA records.
    """
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return _as_der(public())
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)
    return None if private is None else _as_der(private())


def _as_der(chain: Sequence[Any] | None) -> tuple[bytes, ...] | None:
    if not chain:
        return None
    return tuple(item if isinstance(item, bytes) else bytes(item.public_bytes(_DER)) for item in chain)


def record_matches(record: Tlsa, certificate: x509.Certificate) -> bool:
    """RFC 6698 2.1: the selector (0 certificate, 1 public key) and matching type (0 full, 1 SHA-256, 2 SHA-512)."""
    if record.selector == 0:
        selected = certificate.public_bytes(Encoding.DER)
    else:
        selected = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if record.mtype == 1:
        return hashlib.sha256(selected).digest() == record.data
    if record.mtype == 2:
        return hashlib.sha512(selected).digest() == record.data
    return record.mtype == 0 and selected == record.data


def dane_ta_authenticates(records: Sequence[Tlsa], chain_der: Sequence[bytes], names: Sequence[str],
                          now: datetime.datetime | None = None) -> bool:
    """DANE-TA (RFC 7672 3.1.2): some presented issuer matches a usage-2 record and the path to it holds.

    The leaf (index 0) is never a trust anchor: only DANE-EE records match the leaf (RFC 7671 5.1, 5.2).
    The TA certificate must be in the presented chain (RFC 7672 3.1.2). ``now`` is the wall-clock time
    (certificate dates are real time, not the queue's clock).
    """
    anchors = [r for r in records if r.usage == DANE_TA]
    if not anchors or len(chain_der) < 2:
        return False
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        return False
    moment = now or datetime.datetime.now(datetime.UTC)
    for index in range(1, len(certificates)):
        anchored = any(record_matches(r, certificates[index]) for r in anchors)
        if anchored and _path_holds(certificates[:index + 1], names, moment):
            return True
    return False


def _path_holds(path: Sequence[x509.Certificate], names: Sequence[str], now: datetime.datetime) -> bool:
    """Leaf first, trust anchor last: signatures, CA flags, dates and the leaf's names."""
    signed = all(_directly_issued(child, issuer) for child, issuer in itertools.pairwise(path))
    return (signed and all(_is_ca(issuer) for issuer in path[1:])
            and all(_valid_at(certificate, now) for certificate in path) and leaf_names_match(path[0], names))


def _directly_issued(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Issuer name and signature (``verify_directly_issued_by``, cryptography >= 40; we require >= 42)."""
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _valid_at(certificate: x509.Certificate, now: datetime.datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def leaf_names_match(leaf: x509.Certificate, names: Sequence[str]) -> bool:
    """RFC 7672 3.2.3: the subjectAltName DNS names (else the subject CN); ``*.`` covers one leftmost label."""
    try:
        presented = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        presented = []
    if not presented:
        presented = [str(a.value) for a in leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    return any(mx_matches(pattern, name) for pattern in presented for name in names)


def dane_authenticates(records: Sequence[Tlsa], tls: ssl.SSLObject | None, names: Sequence[str]) -> bool:
    """Whether the TLS peer is authenticated by a DANE-EE or a DANE-TA record (RFC 7672 3.1)."""
    leaf = tls.getpeercert(binary_form=True) if tls is not None else None
    if tls is None or not leaf:
        return False
    if any(r.usage == DANE_EE and record_matches(r, x509.load_der_x509_certificate(leaf)) for r in records):
        return True
    if not any(r.usage == DANE_TA for r in records):
        return False
    chain = peer_chain(tls)
    return chain is not None and chain[0] == leaf and dane_ta_authenticates(records, chain, names)
