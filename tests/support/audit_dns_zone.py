"""A DNS zone in which every record the audit's DNS checks look at is right, for LoopbackDnsServer.

One hosted domain (``example.test``) whose MX is the server (``mail.example.test``, 203.0.113.25),
with SPF (10 look-ups through an include: the limit exactly), the DKIM keys of ``keys``, DMARC with
p=quarantine and rua, MTA-STS and TLS-RPT records, a DANE-EE TLSA record of ``certificate`` and the
PTR of the server's address. Tests break one record at a time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.msgauth.dkim_keys import DomainKeys
from support.msgauth_dns import txt_value

DOMAIN = "example.test"
HOST = "mail.example.test"
ADDRESS = "203.0.113.25"
PTR_NAME = "25.113.0.203.in-addr.arpa"
TLSA_NAME = f"_25._tcp.{HOST}"
DNSBL_ZONE = "bl.test"
DNSBL_NAME = f"25.113.0.203.{DNSBL_ZONE}"
INCLUDED_HOSTS = 8  # a:h1 ... a:h8 in the include, plus mx and the include itself: 10 look-ups


def spki_sha256(certificate_path: Path) -> str:
    """TLSA 3 1 1 data: the SHA-256 of the certificate's public key (RFC 6698 2.1)."""
    leaf = x509.load_pem_x509_certificates(certificate_path.read_bytes())[0]
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def included_spf(hosts: int) -> str:
    return txt_value("v=spf1 " + " ".join(f"a:h{n}.{DOMAIN}" for n in range(1, hosts + 1)) + " ~all")


def good_zone(keys: DomainKeys, certificate_path: Path) -> dict[tuple[str, str], Any]:
    zone: dict[tuple[str, str], Any] = {
        (HOST, "A"): [ADDRESS],
        (HOST, "TXT"): [txt_value("v=spf1 a -all")],
        (PTR_NAME, "PTR"): [f"{HOST}."],
        (DOMAIN, "MX"): [f"10 {HOST}."],
        (DOMAIN, "TXT"): [txt_value(f"v=spf1 mx include:_spf.{DOMAIN} -all")],
        (f"_spf.{DOMAIN}", "TXT"): [included_spf(INCLUDED_HOSTS)],
        (f"_dmarc.{DOMAIN}", "TXT"): [txt_value(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{DOMAIN}")],
        (f"_mta-sts.{DOMAIN}", "TXT"): [txt_value("v=STSv1; id=2024010101")],
        (f"_smtp._tls.{DOMAIN}", "TXT"): [txt_value(f"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}")],
        (TLSA_NAME, "TLSA"): [f"3 1 1 {spki_sha256(certificate_path)}"],
    }
    for n in range(1, INCLUDED_HOSTS + 2):
        zone[(f"h{n}.{DOMAIN}", "A")] = [f"198.51.100.{n}"]
    for generation in keys.generations():
        for record in keys.public_records(generation):
            zone[(record.name(DOMAIN), "TXT")] = [txt_value(record.txt)]
    return zone
