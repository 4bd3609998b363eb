"""The audit's session probes: VRFY/EXPN enumeration, overlong lines, sender spoofing by a signed-in
user and the banned-source probe, against hardmail (default, and with long command lines allowed)
and against a deliberately weak SMTP server for what hardmail cannot be configured to do."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from hardmail.ops.audit import probe_session
from hardmail.ops.audit.context import ProbeLogin
from hardmail.ops.audit.findings import Finding, Severity
from hardmail.policy.bans import Ban
from hardmail.server.probe_link import ProbeLink
from hardmail.store.ports import Store
from support.live import ALICE, ALICE_PASSWORD, BOB, ServerThread, running_server, server_config
from support.memory_access import MemoryAccessStore
from support.weak_imap_pop3 import audit_context, by_target, hardmail_targets, severities, weak_smtp

LOGIN = ProbeLogin(ALICE, ALICE_PASSWORD, BOB)
SOURCES = ("127.0.0.1", "127.0.0.2")


def _label(server: ServerThread, kind: str) -> str:
    host, port = server.address(kind)
    return f"{host}:{port}"


def _on_server(server: ServerThread, *kinds: str, **values: Any) -> list[Finding]:
    """The probes run on the server's own loop, so that they may use its store (the ban probe)."""
    assert server.server is not None
    values.setdefault("store", server.server.context.store)
    ctx = audit_context(server.config, hardmail_targets(server, *kinds), login=LOGIN, local_domain="example.test",
                        source_ips=SOURCES, **values)
    return server.run(probe_session.run(ctx), timeout=120)


def _weak_store() -> tuple[Store, MemoryAccessStore]:
    access = MemoryAccessStore()
    return cast(Store, SimpleNamespace(access=access)), access


def test_default_instance(live_server: ServerThread) -> None:
    findings = _on_server(live_server)
    smtp = {_label(live_server, kind) for kind in ("smtp", "submission", "submissions")}
    for check in ("session.vrfy", "session.expn"):
        assert severities(findings, check) == dict.fromkeys(smtp, Severity.OK), check
    # 600 octets is over RFC 5321's 512 but within smtp.max_line_length = 1000: noted; 1100 refused
    assert severities(findings, "session.long_command") == dict.fromkeys(smtp, Severity.OK)
    long = by_target(findings, "session.long_command")[_label(live_server, "smtp")].evidence
    assert "600-octet NOOP line answered 250" in long and "1100-octet NOOP line answered 500" in long
    submission = {_label(live_server, kind) for kind in ("submission", "submissions")}
    for check in ("session.spoof_mail_from", "session.spoof_from_header"):
        assert severities(findings, check) == dict.fromkeys(submission, Severity.OK), check
    assert "553" in by_target(findings, "session.spoof_from_header")[_label(live_server, "submissions")].evidence
    every = {_label(live_server, kind) for kind in ("smtp", "submission", "submissions", "imap", "imaps",
                                                    "pop3", "pop3s")}
    assert severities(findings, "session.banned_source") == dict.fromkeys(every, Severity.OK)
    assert live_server.run(live_server.server.context.store.access.get_bans(["127.0.0.2"])) == []  # type: ignore[union-attr]
    # smtp.max_line_length covers text lines too: the probe message is refused at its end
    text = by_target(findings, "session.long_text_line")[_label(live_server, "smtp")]
    assert text.severity is Severity.OK and "end of data answered 554 5.6.0" in text.evidence
    assert [m for m in live_server.messages(ALICE) if b"Subject: hardmail audit:" in m] == []
    assert live_server.messages(BOB) == []
    assert ALICE_PASSWORD not in repr(findings)


def test_long_command_lines_allowed(tmp_path: Path) -> None:
    with running_server(server_config(tmp_path / "data", smtp={"max_line_length": 4000})) as server:
        findings = _on_server(server, "smtp", "submission")
    long = by_target(findings, "session.long_command")
    assert {f.severity for f in long.values()} == {Severity.MEDIUM} and len(long) == 2
    assert all("1100-octet NOOP line answered 250" in f.evidence for f in long.values())


@pytest.mark.parametrize(("max_line", "severity"), [(512, Severity.OK), (800, Severity.OK), (0, Severity.MEDIUM)])
def test_long_command_steps(max_line: int, severity: Severity) -> None:
    with weak_smtp(max_line=max_line) as server:
        target = server.target()
        ctx = audit_context(server_config(Path("/nonexistent")), [target], own_server=False)
        findings = asyncio.run(probe_session.run(ctx))
    assert severities(findings, "session.long_command") == {target.label: severity}


def test_vrfy_and_expn_that_tell_users_apart() -> None:
    with weak_smtp(users=frozenset({"postmaster@weak.example.test"}), vrfy_tells=True) as server:
        target = server.target()
        ctx = audit_context(server_config(Path("/nonexistent")), [target], own_server=False,
                            local_domain="weak.example.test")
        findings = asyncio.run(probe_session.run(ctx))
    for check in ("session.vrfy", "session.expn"):
        finding = by_target(findings, check)[target.label]
        assert finding.severity is Severity.MEDIUM, check
        assert "postmaster@weak.example.test answered 250" in finding.evidence and "answered 550" in finding.evidence
    # without a login the long text line is not ended: the weak server received no message
    assert by_target(findings, "session.long_text_line")[target.label].severity is Severity.INFO
    assert server.state.delivered == []
    assert severities(findings, "session.banned_source") == {"": Severity.INFO}  # --target: never bans


def test_vrfy_with_one_answer_for_everybody() -> None:
    with weak_smtp(users=frozenset({"postmaster@weak.example.test"})) as server:
        ctx = audit_context(server_config(Path("/nonexistent")), [server.target()], own_server=False,
                            local_domain="weak.example.test")
        findings = asyncio.run(probe_session.run(ctx))
    assert severities(findings, "session.vrfy") == {server.target().label: Severity.OK}


def test_no_sign_in_without_tls() -> None:
    login = ProbeLogin("probe@weak.example.test", "probe password 1", "boss@weak.example.test")
    with weak_smtp(users=frozenset({login.address}), spoofing=True) as server:
        target = server.target("submission")
        ctx = audit_context(server_config(Path("/nonexistent")), [target], own_server=False, login=login)
        findings = asyncio.run(probe_session.run(ctx))
    # the weak server has no STARTTLS: the probe never signs in without TLS
    assert severities(findings, "session.spoof_mail_from") == {target.label: Severity.INFO}
    assert "STARTTLS" in by_target(findings, "session.spoof_mail_from")[target.label].evidence
    assert server.state.delivered == []


def test_spoofing_verdicts_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The weak server speaks plain text; the probe's TLS requirement is lifted for this test only."""
    login = ProbeLogin("probe@weak.example.test", "probe password 1", "boss@weak.example.test")
    monkeypatch.setattr(probe_session, "open_secure", probe_session.open_talk)
    monkeypatch.setattr(ProbeLink, "tls_version", property(lambda self: "TLSv1.3"))
    for spoofing, severity in ((True, Severity.HIGH), (False, Severity.OK)):
        with weak_smtp(users=frozenset({login.address}), spoofing=spoofing) as server:
            target = server.target("submission")
            ctx = audit_context(server_config(Path("/nonexistent")), [target], own_server=False, login=login)
            findings = asyncio.run(probe_session.run(ctx))
        assert severities(findings, "session.spoof_mail_from") == {target.label: severity}
        assert severities(findings, "session.spoof_from_header") == {target.label: severity}
        assert len(server.state.delivered) == (1 if spoofing else 0)  # only the From: probe, to itself
        if spoofing:
            assert b"From: <audit-nobody-" in server.state.delivered[0]
            assert b"To: <probe@weak.example.test>" in server.state.delivered[0]

        nobody = by_target(findings, "session.spoof_mail_from")[target.label].evidence
        assert "MAIL FROM:<audit-nobody-" in nobody and "@weak.example.test>" in nobody


def test_spoofing_as_an_own_alias_is_no_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """With --login alice, foreign_address (postmaster@) is often one of alice's own aliases: the
    probe sends as an address nobody owns, so a server that lets her use her alias is no finding."""
    login = ProbeLogin("alice@weak.example.test", "probe password 1", "postmaster@weak.example.test")
    monkeypatch.setattr(probe_session, "open_secure", probe_session.open_talk)
    monkeypatch.setattr(ProbeLink, "tls_version", property(lambda self: "TLSv1.3"))
    with weak_smtp(users=frozenset({login.address}), aliases=frozenset({login.foreign_address})) as server:
        target = server.target("submission")
        ctx = audit_context(server_config(Path("/nonexistent")), [target], own_server=False, login=login)
        findings = asyncio.run(probe_session.run(ctx))
    assert severities(findings, "session.spoof_mail_from") == {target.label: Severity.OK}
    assert severities(findings, "session.spoof_from_header") == {target.label: Severity.OK}
    assert "postmaster@" not in by_target(findings, "session.spoof_mail_from")[target.label].evidence
    assert server.state.delivered == []


def test_temporary_refusals_are_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    login = ProbeLogin("probe@weak.example.test", "probe password 1", "boss@weak.example.test")
    monkeypatch.setattr(probe_session, "open_secure", probe_session.open_talk)
    monkeypatch.setattr(ProbeLink, "tls_version", property(lambda self: "TLSv1.3"))
    with weak_smtp(users=frozenset({login.address}), temporary=True) as server:
        target, mx = server.target("submission"), server.target("smtp")  # one port: two runs
        findings = [*asyncio.run(probe_session.run(audit_context(
            server_config(Path("/nonexistent")), [target], own_server=False, login=login))), *[
            f for f in asyncio.run(probe_session.run(audit_context(
                server_config(Path("/nonexistent")), [mx], own_server=False, login=login)))
            if f.check == "session.long_text_line"]]
    for check in ("session.long_command", "session.spoof_mail_from", "session.spoof_from_header"):
        finding = by_target(findings, check)[target.label]
        assert finding.severity is Severity.INFO and "451" in finding.evidence, check
    assert by_target(findings, "session.long_text_line")[mx.label].severity is Severity.INFO


def test_a_server_that_serves_a_banned_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_session, "BAN_WAIT", 0.5)
    monkeypatch.setattr(probe_session, "POLL_EVERY", 0.1)
    store, access = _weak_store()
    earlier = Ban("127.0.0.2", "failures", "old", time.time() - 90000, time.time() - 86400, offences=2)
    access.bans[earlier.subject] = earlier
    with weak_smtp() as server:
        ctx = audit_context(server_config(Path("/nonexistent")), [server.target()], store=store,
                            source_ips=SOURCES, timeout=2.0)
        findings = asyncio.run(probe_session.run(ctx))
    finding = by_target(findings, "session.banned_source")[server.target().label]
    assert finding.severity is Severity.HIGH and "127.0.0.2" in finding.evidence
    assert server.state.connections.count("127.0.0.2") >= 2  # served before the ban and after it
    assert access.bans == {"127.0.0.2": earlier}  # the record that was there is back


def test_a_server_that_refuses_a_banned_source() -> None:
    store, access = _weak_store()
    with weak_smtp(refuse_all=True) as server:
        ctx = audit_context(server_config(Path("/nonexistent")), [server.target()], store=store, source_ips=SOURCES)
        findings = asyncio.run(probe_session.run(ctx))
    finding = by_target(findings, "session.banned_source")[server.target().label]
    assert finding.severity is Severity.INFO and "refused before any ban" in finding.evidence
    assert access.bans == {}


def test_no_second_source_address() -> None:
    store, _ = _weak_store()
    with weak_smtp() as server:
        ctx = audit_context(server_config(Path("/nonexistent")), [server.target()], store=store)
        findings = asyncio.run(probe_session.run(ctx))
    assert severities(findings, "session.banned_source") == {"": Severity.INFO}
    assert "second loopback source" in by_target(findings, "session.banned_source")[""].evidence
