"""The audit's AUTH probes (practice 1) against hardmail configured weak in exactly that way, and
against the default instance, which gives no finding."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hardmail.admin.access_service import AccessService, RangeSpec
from hardmail.ops.audit import probe_auth
from hardmail.ops.audit.findings import Finding, Severity
from hardmail.server.access_hook import access_hook_of
from support.live import ServerThread, running_server, server_config
from support.weak_imap_pop3 import audit_context, by_target, hardmail_targets, severities

PLAIN = ("smtp", "submission", "imap", "pop3")


def _audit(server: ServerThread, *kinds: str) -> list[Finding]:
    ctx = audit_context(server.config, hardmail_targets(server, *kinds))
    return asyncio.run(probe_auth.run(ctx))


def _label(server: ServerThread, kind: str) -> str:
    host, port = server.address(kind)
    return f"{host}:{port}"


def test_default_instance_has_no_auth_finding(live_server: ServerThread) -> None:
    findings = _audit(live_server)
    plain = {_label(live_server, kind) for kind in PLAIN}
    for check in ("auth.offered_before_tls", "auth.accepted_before_tls"):
        assert severities(findings, check) == dict.fromkeys(plain, Severity.OK), check
    assert severities(findings, "auth.on_mx") == {_label(live_server, "smtp"): Severity.OK}
    accepted = by_target(findings, "auth.accepted_before_tls")
    assert "538" in accepted[_label(live_server, "submission")].evidence
    assert "PRIVACYREQUIRED" in accepted[_label(live_server, "imap")].evidence
    assert all(f.fix == "" for f in findings)


def test_plaintext_auth_everywhere_is_offered_and_accepted(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", smtp={"allow_plaintext_auth": True},
                           imap={"allow_plaintext_login": True}, pop3={"allow_plaintext_login": True})
    with running_server(config) as server:
        findings = _audit(server, "submission", "imap", "pop3", "submissions")
    labels = {_label(server, kind): kind for kind in ("submission", "imap", "pop3")}
    offered = by_target(findings, "auth.offered_before_tls")
    accepted = by_target(findings, "auth.accepted_before_tls")
    assert set(offered) == set(accepted) == set(labels)  # implicit TLS is not a plain-text listener
    assert {f.severity for f in offered.values()} == {Severity.HIGH}
    assert {f.severity for f in accepted.values()} == {Severity.CRITICAL}
    assert "AUTH PLAIN" in offered[_label(server, "submission")].evidence
    assert "535" in accepted[_label(server, "submission")].evidence
    assert "AUTHENTICATIONFAILED" in accepted[_label(server, "imap")].evidence
    assert "PASS answered" in accepted[_label(server, "pop3")].evidence
    assert all("allow_plaintext" in f.fix for f in [*offered.values(), *accepted.values()])
    assert severities(findings, "auth.on_mx") == {"": Severity.INFO}  # no MX target given


def test_an_ip_range_that_wants_tls_refuses_what_the_listener_offers(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", smtp={"allow_plaintext_auth": True})
    with running_server(config) as server:
        assert server.server is not None
        service = AccessService(server.server.context.store, config)
        server.run(service.add_range(RangeSpec("loopback", "127.0.0.0/8", 20, tls_for_auth=True)))
        hook = access_hook_of(server.server.context)
        assert hook is not None
        hook.forget_cached_ranges()
        findings = _audit(server, "submission")
    label = _label(server, "submission")
    assert severities(findings, "auth.offered_before_tls") == {label: Severity.HIGH}
    accepted = by_target(findings, "auth.accepted_before_tls")[label]
    assert accepted.severity is Severity.OK and "538" in accepted.evidence


def test_auth_on_the_mx_port(tmp_path: Path) -> None:
    with running_server(server_config(tmp_path / "data", smtp={"auth_on_mx": True})) as server:
        findings = _audit(server, "smtp")
    finding = by_target(findings, "auth.on_mx")[_label(server, "smtp")]
    assert finding.severity is Severity.MEDIUM
    assert "after STARTTLS: AUTH PLAIN" in finding.evidence and "before STARTTLS" not in finding.evidence
    assert "smtp.auth_on_mx" in finding.fix
    assert severities(findings, "auth.offered_before_tls") == {_label(server, "smtp"): Severity.OK}
