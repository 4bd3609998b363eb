"""The audit's TLS probes (practice 3) against hardmail configured weak in exactly that way (old
versions, weak ciphers, a certificate about to expire, a self-signed certificate on a public
name), a plain SMTP server without STARTTLS, and the default instance, which gives no finding."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest

from hardmail.ops.audit import probe_tls
from hardmail.ops.audit.findings import Finding, Severity
from support.live import HOSTNAME, ServerThread, running_server, server_config
from support.weak_imap_pop3 import (
    audit_context,
    by_target,
    hardmail_targets,
    make_ca,
    make_certificate,
    severities,
    weak_smtp,
    write_certificate,
)

TLS1_OFFERED = probe_tls.client_context(minimum=ssl.TLSVersion.TLSv1, maximum=ssl.TLSVersion.TLSv1) is not None
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


def _audit(server: ServerThread, *kinds: str, **values: Any) -> list[Finding]:
    return asyncio.run(probe_tls.run(audit_context(server.config, hardmail_targets(server, *kinds), **values)))


def _only(findings: list[Finding], check: str) -> set[Severity]:
    return set(severities(findings, check).values())


def test_default_instance_has_no_tls_finding(live_server: ServerThread) -> None:
    findings = _audit(live_server)
    labels = {f"{h}:{p}" for h, p in (live_server.address(k) for k in ("smtp", "submission", "imap", "pop3"))}
    assert severities(findings, "tls.starttls_offered") == dict.fromkeys(labels, Severity.OK)
    assert len(by_target(findings, "tls.old_versions")) == 7
    assert _only(findings, "tls.old_versions") == {Severity.OK if TLS1_OFFERED else Severity.INFO}
    assert _only(findings, "tls.weak_ciphers") == {Severity.OK}
    assert _only(findings, "tls.cert_expiry") == {Severity.OK}
    # the generated self-signed certificate of a name that is not public: explained, not blamed
    trust = by_target(findings, "tls.cert_name")
    assert {f.severity for f in trust.values()} == {Severity.INFO}
    assert all("self-signed" in f.evidence and "not a public DNS name" in f.evidence for f in trust.values())


@pytest.mark.skipif(not TLS1_OFFERED, reason="this machine's OpenSSL cannot offer TLS 1.0")
def test_tls_1_0_and_1_1_accepted(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", tls={"min_version": "TLSv1", "ciphers": "DEFAULT:@SECLEVEL=0"})
    with running_server(config) as server:
        findings = _audit(server, "submission", "imaps", "pop3")
    old = by_target(findings, "tls.old_versions")
    assert {f.severity for f in old.values()} == {Severity.HIGH} and len(old) == 3
    assert all("TLS 1.0 (TLSv1 " in f.evidence and "TLS 1.1 (TLSv1.1 " in f.evidence for f in old.values())
    assert all("tls.min_version" in f.fix for f in old.values())


def test_an_openssl_without_tls_1_0_is_not_checked_not_ok(live_server: ServerThread,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = probe_tls.client_context

    def without_tls1(minimum: ssl.TLSVersion | None = None, **values: Any) -> ssl.SSLContext | None:
        return None if minimum == ssl.TLSVersion.TLSv1 else real(minimum=minimum, **values)

    monkeypatch.setattr(probe_tls, "client_context", without_tls1)
    finding = next(iter(by_target(_audit(live_server, "imaps"), "tls.old_versions").values()))
    assert finding.severity is Severity.INFO
    assert "TLS 1.0: this machine's OpenSSL cannot offer it" in finding.evidence


def test_weak_ciphers_accepted(tmp_path: Path) -> None:
    ciphers = "ECDHE+AESGCM:aNULL:eNULL:@SECLEVEL=0"
    with running_server(server_config(tmp_path / "data", tls={"ciphers": ciphers})) as server:
        findings = _audit(server, "smtp", "submissions")
    weak = by_target(findings, "tls.weak_ciphers")
    assert {f.severity for f in weak.values()} == {Severity.HIGH} and len(weak) == 2
    for finding in weak.values():
        assert "NULL (no encryption): " in finding.evidence and "anonymous (no authentication): " in finding.evidence
    assert _only(findings, "tls.old_versions") <= {Severity.OK, Severity.INFO}


def test_certificate_about_to_expire(tmp_path: Path) -> None:
    tls = write_certificate(tmp_path / "cert", HOSTNAME, days_left=3)
    with running_server(server_config(tmp_path / "data", tls=tls)) as server:
        findings = _audit(server, "submission", "imaps")
    expiry = by_target(findings, "tls.cert_expiry")
    assert {f.severity for f in expiry.values()} == {Severity.CRITICAL} and len(expiry) == 2
    assert all("in 3.0 days" in f.evidence or "in 2.9 days" in f.evidence for f in expiry.values())


@pytest.mark.parametrize(("days", "severity"), [(-1, Severity.CRITICAL), (3, Severity.CRITICAL), (10, Severity.HIGH),
                                                (18, Severity.MEDIUM), (25, Severity.OK)])
def test_expiry_thresholds(days: float, severity: Severity) -> None:
    cert, _ = make_certificate(HOSTNAME, days_left=days, now=NOW)
    finding = probe_tls.expiry_finding(cert, NOW, "127.0.0.1:993")
    assert finding.severity is severity
    assert ("expired" in finding.evidence) == (days < 0)


def test_self_signed_certificate_on_a_public_name(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", server={"hostname": "mail.hardmail-audit.org"})
    with running_server(config) as server:
        findings = _audit(server, "imaps", "smtp")
    trust = by_target(findings, "tls.cert_name")
    assert {f.severity for f in trust.values()} == {Severity.HIGH} and len(trust) == 2
    assert all("it is self-signed" in f.evidence and "does not cover" not in f.evidence for f in trust.values())


def test_name_mismatch_and_a_good_certificate_on_a_public_name() -> None:
    ca = make_ca()
    other, _ = make_certificate("other.hardmail-audit.org", days_left=90, issuer=ca)
    right, _ = make_certificate("mail.hardmail-audit.org", days_left=90, issuer=ca)
    wrong = probe_tls.trust_finding(other, "mail.hardmail-audit.org", "127.0.0.1:465")
    assert wrong.severity is Severity.HIGH
    assert "does not cover mail.hardmail-audit.org" in wrong.evidence and "self-signed" not in wrong.evidence
    good = probe_tls.trust_finding(right, "mail.hardmail-audit.org", "127.0.0.1:465")
    assert good.severity is Severity.OK and "Audit Test CA" in good.evidence


def test_a_plain_listener_without_starttls() -> None:
    with weak_smtp() as server:
        target = server.target("submission")
        findings = asyncio.run(probe_tls.run(audit_context(server_config(Path("/nonexistent")), [target],
                                                           own_server=False)))
    starttls = by_target(findings, "tls.starttls_offered")[target.label]
    assert starttls.severity is Severity.HIGH and "does not offer STARTTLS" in starttls.evidence
    assert severities(findings, "tls.old_versions") == {target.label: Severity.INFO}
