"""The audit's DNS checks against a real DNS server on loopback: a correct zone, then each record broken."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hardmail.config.schema import Config
from hardmail.delivery.tls_policy import PolicyError
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import DnsPythonResolver
from hardmail.ops.audit import checks_dns
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import Finding, Severity
from hardmail.server.tls import SELF_SIGNED_CERT, TlsManager
from hardmail.store.ports import Domain, Store
from support.audit_dns_zone import (
    DNSBL_NAME,
    DNSBL_ZONE,
    DOMAIN,
    HOST,
    PTR_NAME,
    TLSA_NAME,
    good_zone,
    included_spf,
)
from support.dns_server import LoopbackDnsServer
from support.msgauth_dns import txt_value

Zone = dict[tuple[str, str], Any]
Audit = Callable[..., Awaitable[list[Finding]]]
HOST_IDS = {"dns.host", "dns.ptr", "dns.dnsbl"}


class DomainList:
    """The one store method the DNS checks use."""

    def __init__(self, *names: str) -> None:
        self.names = names

    async def list_domains(self) -> list[Domain]:
        return [Domain(name) for name in self.names]


@dataclass
class Site:
    config: Config
    keys: DomainKeys
    certificate: Path

    def zone(self) -> Zone:
        return good_zone(self.keys, self.certificate)


def _config(data: Path, hostname: str = HOST, **extra: Any) -> Config:
    return Config.model_validate({"server": {"hostname": hostname, "data_dir": str(data)},
                                  "antispam": {"dnsbl": [{"zone": DNSBL_ZONE}]}, **extra})


@pytest.fixture
def site(tmp_path: Path) -> Site:
    config = _config(tmp_path / "data")
    keys = DomainKeys(config.data_dir, DOMAIN)
    keys.generate(1_800_000_000.0)
    TlsManager(config).ensure_certificate()
    return Site(config, keys, config.tls_dir / SELF_SIGNED_CERT)


@pytest.fixture(scope="module")
def dns_server() -> Iterator[LoopbackDnsServer]:
    """One server for the module (stopping one takes a second); each audit gives it its zone."""
    with LoopbackDnsServer({}) as server:
        yield server


@pytest.fixture
def audit(dns_server: LoopbackDnsServer) -> Audit:
    async def run(config: Config, zone: Zone, *, store: Any = None, authenticated: bool = True,
                  **options: Any) -> list[Finding]:
        dns_server.resolver.zone = {(n.lower(), t.upper()): v for (n, t), v in zone.items()}
        dns_server.resolver.authenticated = authenticated
        resolver = DnsPythonResolver(["127.0.0.1"], dns_server.port, timeout=3)
        domains = DomainList(DOMAIN) if store is None else store
        ctx = AuditContext(config, resolver, store=cast(Store, domains), timeout=5)
        return await checks_dns.run(ctx, **options)
    return run


def _finding(findings: list[Finding], check: str) -> Finding:
    target = "" if check in HOST_IDS else DOMAIN
    matching = [f for f in findings if f.check == check and f.target == target]
    assert len(matching) == 1, findings
    return matching[0]


async def test_a_correct_zone_gives_ok_for_every_check(audit: Audit, site: Site) -> None:
    findings = await audit(site.config, site.zone())
    assert sorted((f.check, f.target) for f in findings) == sorted(
        (c.id, "" if c.id in HOST_IDS else DOMAIN) for c in checks_dns.CHECKS)
    assert {f.check: f.severity for f in findings if f.severity is not Severity.OK} == {}
    assert "10 DNS look-ups" in _finding(findings, "dns.spf.lookups").evidence
    assert "policy file not fetched" in _finding(findings, "dns.mta_sts").evidence
    assert "matches" in _finding(findings, "dns.dane").evidence
    assert "203.0.113.25 has PTR mail.example.test" in _finding(findings, "dns.ptr").evidence


def _set(name: str, rtype: str, *values: str) -> Callable[[Zone], None]:
    def change(zone: Zone) -> None:
        zone[(name, rtype)] = list(values)
    return change


def _drop(name: str, rtype: str) -> Callable[[Zone], None]:
    def change(zone: Zone) -> None:
        del zone[(name, rtype)]
    return change


def _wrong_dkim(zone: Zone) -> None:
    """The Ed25519 selector publishes another key than ours."""
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = next(n for n, _ in zone if n.endswith("e._domainkey." + DOMAIN))
    zone[(name, "TXT")] = [txt_value(f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}")]


BROKEN = [
    ("missing MX", _drop(DOMAIN, "MX"), "dns.mx", Severity.HIGH, "has no MX record"),
    ("MX elsewhere", _set(DOMAIN, "MX", "10 mx.elsewhere.test."), "dns.mx", Severity.HIGH, "none is this server"),
    ("SPF +all", _set(DOMAIN, "TXT", txt_value("v=spf1 mx +all")), "dns.spf.all", Severity.HIGH,
     "allows every host"),
    ("SPF ?all", _set(DOMAIN, "TXT", txt_value("v=spf1 mx ?all")), "dns.spf.all", Severity.HIGH, "?all"),
    ("SPF 11 look-ups", _set(f"_spf.{DOMAIN}", "TXT", included_spf(9)), "dns.spf.lookups", Severity.HIGH,
     "takes 11 DNS look-ups"),
    ("SPF syntax error", _set(DOMAIN, "TXT", txt_value("v=spf1 mx moo -all")), "dns.spf", Severity.HIGH,
     "Unknown mechanism found: moo"),
    ("two SPF records", _set(DOMAIN, "TXT", txt_value("v=spf1 mx -all"), txt_value("v=spf1 -all")), "dns.spf",
     Severity.HIGH, "has 2 SPF records"),
    ("no SPF record", _drop(DOMAIN, "TXT"), "dns.spf", Severity.HIGH, "has no SPF record"),
    ("SPF without our address", _set(DOMAIN, "TXT", txt_value("v=spf1 ip4:198.51.100.7 -all")), "dns.spf.ours",
     Severity.HIGH, "gets SPF fail"),
    ("DKIM mismatch", _wrong_dkim, "dns.dkim", Severity.HIGH, "differs from our key"),
    ("DMARC p=none", _set(f"_dmarc.{DOMAIN}", "TXT", txt_value(f"v=DMARC1; p=none; rua=mailto:d@{DOMAIN}")),
     "dns.dmarc", Severity.MEDIUM, "p=none"),
    ("DMARC without rua", _set(f"_dmarc.{DOMAIN}", "TXT", txt_value("v=DMARC1; p=reject")), "dns.dmarc.rua",
     Severity.LOW, "no rua="),
    ("DMARC missing", _drop(f"_dmarc.{DOMAIN}", "TXT"), "dns.dmarc", Severity.HIGH, "has no DMARC record"),
    ("MTA-STS malformed", _set(f"_mta-sts.{DOMAIN}", "TXT", txt_value("v=STSv1; id=")), "dns.mta_sts",
     Severity.MEDIUM, "is not well-formed"),
    ("TLS-RPT missing", _drop(f"_smtp._tls.{DOMAIN}", "TXT"), "dns.tlsrpt", Severity.LOW, "no TLS-RPT record"),
    ("TLS-RPT without rua", _set(f"_smtp._tls.{DOMAIN}", "TXT", txt_value("v=TLSRPTv1")), "dns.tlsrpt",
     Severity.MEDIUM, "has no rua="),
    ("TLSA mismatch", _set(TLSA_NAME, "TLSA", "3 1 1 " + "00" * 32), "dns.dane", Severity.HIGH,
     "no TLSA record at _25._tcp.mail.example.test"),
    ("PTR elsewhere", _set(PTR_NAME, "PTR", "other.example.test."), "dns.ptr", Severity.HIGH,
     "does not resolve back"),
    ("PTR not the HELO name", lambda z: (_set(PTR_NAME, "PTR", "h9.example.test.")(z),
                                         _set("h9.example.test", "A", "203.0.113.25")(z)),
     "dns.ptr", Severity.MEDIUM, "but the HELO name is mail.example.test"),
    ("no PTR", _drop(PTR_NAME, "PTR"), "dns.ptr", Severity.HIGH, "has no PTR record"),
    ("listed on a DNSBL", _set(DNSBL_NAME, "A", "127.0.0.2"), "dns.dnsbl", Severity.HIGH,
     "listed in bl.test (127.0.0.2)"),
    ("host name without address", _drop(HOST, "A"), "dns.host", Severity.HIGH, "has no A or AAAA record"),
]


@pytest.mark.parametrize(("change", "check", "severity", "evidence"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
async def test_each_broken_record_gives_its_finding(audit: Audit, site: Site, change: Callable[[Zone], None],
                                                    check: str, severity: Severity, evidence: str) -> None:
    zone = site.zone()
    change(zone)
    found = _finding(await audit(site.config, zone), check)
    assert found.severity is severity, found
    assert evidence in found.evidence, found
    assert found.fix


async def test_tlsa_records_without_dnssec_are_only_a_warning(audit: Audit, site: Site) -> None:
    zone = site.zone()
    zone[(TLSA_NAME, "TLSA")] = ["3 1 1 " + "00" * 32]
    found = _finding(await audit(site.config, zone, authenticated=False), "dns.dane")
    assert found.severity is Severity.MEDIUM and "not DNSSEC-validated" in found.evidence


class Policy:
    def __init__(self, text: str | None) -> None:
        self.text = text
        self.asked: list[str] = []

    async def fetch(self, domain: str) -> str:
        self.asked.append(domain)
        if self.text is None:
            raise PolicyError("HTTP 404")
        return self.text


@pytest.mark.parametrize(("policy", "severity", "evidence"), [
    (f"version: STSv1\nmode: enforce\nmx: {HOST}\nmax_age: 86400\n", Severity.OK, "mode enforce"),
    ("version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n", Severity.HIGH,
     "does not list mail.example.test"),
    (f"version: STSv1\nmode: testing\nmx: {HOST}\nmax_age: 86400\n", Severity.LOW, "do not enforce"),
    (None, Severity.MEDIUM, "HTTP 404"),
])
async def test_an_injected_fetcher_checks_the_policy_file(audit: Audit, site: Site, policy: str | None,
                                                          severity: Severity, evidence: str) -> None:
    fetcher = Policy(policy)
    found = _finding(await audit(site.config, site.zone(), sts_fetcher=fetcher), "dns.mta_sts")
    assert fetcher.asked == [DOMAIN]
    assert found.severity is severity and evidence in found.evidence, found


@pytest.mark.parametrize("hostname", ["localhost", "mailserver", "mail.unknown.test"])
async def test_a_host_name_that_is_not_public_makes_every_check_info(audit: Audit, site: Site,
                                                                     hostname: str) -> None:
    config = _config(site.config.data_dir, hostname)
    findings = await audit(config, site.zone())
    assert {f.check for f in findings} == {c.id for c in checks_dns.CHECKS}
    assert all(f.severity is Severity.INFO and "not a public name" in f.evidence for f in findings), findings


async def test_public_listen_addresses_are_ours(audit: Audit, site: Site) -> None:
    config = _config(site.config.data_dir, listen={"smtp": ["1.2.3.4:25"]})
    findings = await audit(config, site.zone())
    host = _finding(findings, "dns.host")
    assert host.severity is Severity.HIGH and "listeners are on 1.2.3.4" in host.evidence
    assert "1.2.3.4 has no PTR record" in _finding(findings, "dns.ptr").evidence


async def test_domain_checks_need_the_store_and_a_public_domain(audit: Audit, site: Site) -> None:
    findings = await audit(site.config, site.zone(), store=DomainList("unknown.test"))
    unknown = [f for f in findings if f.target == "unknown.test"]
    assert len(unknown) == len(checks_dns.DOMAIN_CHECKS)
    assert all(f.severity is Severity.INFO and "not a public name" in f.evidence for f in unknown)
    assert _finding(findings, "dns.host").severity is Severity.OK


async def test_no_dkim_keys_and_no_dnsbl(audit: Audit, tmp_path: Path, site: Site) -> None:
    config = Config.model_validate({"server": {"hostname": HOST, "data_dir": str(tmp_path / "empty")}})
    findings = await audit(config, site.zone())
    dkim = _finding(findings, "dns.dkim")
    assert dkim.severity is Severity.HIGH and f"hardmail dkim generate {DOMAIN}" in dkim.fix
    assert _finding(findings, "dns.dnsbl").severity is Severity.INFO
    assert "cannot be read" in _finding(findings, "dns.dane").evidence  # no certificate in this data_dir
