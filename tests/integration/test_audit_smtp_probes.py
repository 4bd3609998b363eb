"""The audit's SMTP attack probes (relay, smuggling, STARTTLS injection) against a deliberately weak
server (tests/support/weak_smtp.py: the finding appears) and a default hardmail (it does not)."""

from __future__ import annotations

import email
import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from hardmail.config.schema import Config
from hardmail.msgauth.dns import StaticResolver
from hardmail.ops.audit import probe_relay, probe_smuggling, probe_starttls
from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.findings import Finding, Severity
from support.live import DOMAIN, ServerThread, running_server, server_config
from support.weak_smtp import POSTFIX_LIKE_SPLIT, WeakFlags, WeakServer, weak_server

PROBE = ProbeLogin(f"audit-probe-5eed@{DOMAIN}", "probe account pass phrase 31", f"alice@{DOMAIN}")
WEAK_USERS = {PROBE.address: PROBE.password}


@pytest.fixture(scope="module")
def hardmail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("hardmail") / "data")) as server:
        server.run(server.admin.add_account(PROBE.address, PROBE.password))
        yield server


def audit_context(config: Config, targets: list[ProbeTarget], **values: Any) -> AuditContext:
    settings: dict[str, Any] = {"local_domain": DOMAIN, "login": PROBE, "timeout": 5.0}
    settings.update(values)
    return AuditContext(config=config, resolver=StaticResolver({}), targets=targets, **settings)


def hardmail_context(server: ServerThread, *kinds: str) -> AuditContext:
    return audit_context(server.config, [ProbeTarget(kind, *server.address(kind)) for kind in kinds])


@pytest.fixture
def start_weak(tmp_path: Path) -> Iterator[Any]:
    numbers = itertools.count()
    with ExitStack() as stack:
        def start(**flags: Any) -> WeakServer:
            directory = tmp_path / f"weak{next(numbers)}"
            return stack.enter_context(weak_server(directory, WeakFlags(users=dict(WEAK_USERS), **flags)))

        yield start


def weak_context(weak: WeakServer, tmp_path: Path, kind: str = "smtp", **values: Any) -> AuditContext:
    config = values.pop("config", None) or server_config(tmp_path / "unused")
    return audit_context(config, [ProbeTarget(kind, "127.0.0.1", weak.port)], **values)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    assert len({(f.check, f.target) for f in findings}) == len(findings), "one finding per check and target"
    return {f.check: f for f in findings}


def subject(message: bytes) -> str:
    return str(email.message_from_bytes(message)["Subject"])


def worst_of(findings: list[Finding]) -> list[tuple[str, str, Severity]]:
    return [(f.check, f.target, f.severity) for f in findings if f.severity.blocking]


# --- relay --------------------------------------------------------------------------------------


async def test_open_relay_is_critical(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(open_relay=True)
    found = by_id(await probe_relay.run(weak_context(weak, tmp_path)))
    assert found["relay.open"].severity is Severity.CRITICAL
    assert any(line.startswith("plain: RCPT TO:<audit-relay-") and "without AUTH" in line
               for line in found["relay.open"].details)
    assert len(found["relay.open"].details) >= 9  # every direct form, source routes and IP literals included


async def test_disguised_forms_relayed_are_critical(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(relay_patterns=(r"%", r"!"))
    found = by_id(await probe_relay.run(weak_context(weak, tmp_path)))
    assert found["relay.open"].severity is Severity.OK
    disguised = found["relay.disguised"]
    assert disguised.severity is Severity.CRITICAL
    names = {line.split(":", 1)[0] for line in disguised.details}
    assert {"percent hack", "bang path", "quoted percent hack"} <= names
    assert "quoted @" not in names
    assert "(control RCPT TO:<audit-none-" in disguised.evidence


async def test_catch_all_acceptance_is_not_called_a_relay(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(catch_all=True)
    found = by_id(await probe_relay.run(weak_context(weak, tmp_path)))
    assert found["relay.disguised"].severity is Severity.LOW
    assert "catch-all" in found["relay.disguised"].evidence


async def test_relay_from_each_source_and_trust(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(trusted_sources=frozenset({"127.0.0.2"}))
    sources = ("127.0.0.1", "127.0.0.2")
    untrusted = by_id(await probe_relay.run(weak_context(weak, tmp_path, source_ips=sources)))
    assert untrusted["relay.open"].severity is Severity.CRITICAL
    assert all("from 127.0.0.2" in line for line in untrusted["relay.open"].details)
    config = server_config(tmp_path / "trusted", relay={"trusted_networks": ["127.0.0.2/32"]})
    trusted = by_id(await probe_relay.run(weak_context(weak, tmp_path, source_ips=sources, config=config)))
    assert trusted["relay.open"].severity is Severity.OK
    assert "trusted" in trusted["relay.open"].evidence
    other = by_id(await probe_relay.run(weak_context(weak, tmp_path, source_ips=sources, own_server=False)))
    assert other["relay.open"].severity is Severity.MEDIUM  # loopback of another server: usually trusted there


async def test_authenticated_relay_on_port_25_only_when_the_config_forbids_it(start_weak: Any,
                                                                             tmp_path: Path) -> None:
    weak = start_weak()
    mx = by_id(await probe_relay.run(weak_context(weak, tmp_path)))
    assert mx["relay.authenticated"].severity is Severity.HIGH
    assert "smtp.auth_on_mx = false" in mx["relay.authenticated"].evidence
    submission = by_id(await probe_relay.run(weak_context(weak, tmp_path, kind="submission")))
    assert submission["relay.authenticated"].severity is Severity.OK
    assert submission["relay.authenticated"].details  # the accepted forms are listed
    assert PROBE.password not in repr(mx) + repr(submission)


async def test_temporary_refusals_are_not_checked(start_weak: Any, tmp_path: Path) -> None:
    """A greylisting server (451 to MAIL) answers no question: every relay and smuggling check is INFO."""
    weak = start_weak(temporary=True)
    for module in (probe_relay, probe_smuggling):
        for kind in ("smtp", "submission"):
            findings = await module.run(weak_context(weak, tmp_path, kind=kind))
            assert {f.severity for f in findings} == {Severity.INFO}, (module, kind, findings)
            assert all("451 4.7.1" in f.evidence for f in findings if "CHUNKING" not in f.evidence)


async def test_relay_forms_share_one_transaction(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(open_relay=True)
    found = by_id(await probe_relay.run(weak_context(weak, tmp_path)))
    assert found["relay.open"].severity is Severity.CRITICAL
    # one MAIL per session (a fresh session after 8 refusals), every form a RCPT of it; was one MAIL each
    assert weak.mail_commands <= 4
    # RFC 2606 .invalid: no SPF look-up of anybody's real domain
    assert set(weak.ehlo_names) == {"audit-probe.invalid"}
    assert set(weak.senders) == {"audit-probe@audit-probe.invalid", PROBE.address}


async def test_smuggling_says_ehlo_audit_probe_invalid(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak()
    await probe_smuggling.run(weak_context(weak, tmp_path))
    assert set(weak.ehlo_names) == {"audit-probe.invalid"} and set(weak.senders) == {""}


async def test_hardmail_is_no_relay(hardmail: ServerThread) -> None:
    findings = await probe_relay.run(hardmail_context(hardmail, "smtp", "submission", "submissions"))
    assert len(findings) == 9
    assert worst_of(findings) == []
    assert {f.severity for f in findings if f.check != "relay.authenticated"} == {Severity.OK}
    submission = [f for f in findings if f.check == "relay.authenticated" and "accepted after AUTH" in f.evidence]
    assert len(submission) == 2  # submission and submissions relay for the probe account, as they should


async def test_probes_without_a_running_server_say_so() -> None:
    ctx = audit_context(server_config(Path("/nonexistent")), [], running=False)
    for module in (probe_relay, probe_smuggling, probe_starttls):
        findings = await module.run(ctx)
        assert {f.severity for f in findings} == {Severity.INFO}
        assert {f.check for f in findings} == {c.id for c in module.CHECKS}


# --- smuggling ----------------------------------------------------------------------------------


async def test_smuggling_split_in_data_is_critical_with_the_postfix_fix(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(split_on=POSTFIX_LIKE_SPLIT, banner="mx.example.test ESMTP Postfix (Debian/GNU)")
    found = by_id(await probe_smuggling.run(weak_context(weak, tmp_path, own_server=False, login=None)))
    data = found["smuggling.data"]
    assert data.severity is Severity.CRITICAL
    assert "smtpd_forbid_bare_newline = yes" in data.fix
    assert any(line.startswith("DATA with <LF>.<CR><LF>: 250") for line in data.details)
    assert found["smuggling.bdat"].severity is Severity.OK
    assert [m for m in weak.messages if subject(m) == "hardmail audit probe (smuggled)"]
    assert {tuple(rcpts) for _, rcpts in weak.envelopes} == {("postmaster@example.test",)}


async def test_smuggling_split_in_bdat(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(split_on=frozenset({b"\r\n.\n"}), split_in_bdat=True)
    found = by_id(await probe_smuggling.run(weak_context(weak, tmp_path)))
    assert found["smuggling.bdat"].severity is Severity.CRITICAL
    assert "postfix reload" not in found["smuggling.bdat"].fix  # the generic fix: this is not a Postfix
    assert {tuple(rcpts) for _, rcpts in weak.envelopes} == {(PROBE.address,)}


async def test_bare_newlines_accepted_whole_are_medium_and_low(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(accept_bare_newlines=True, chunking=False)
    found = by_id(await probe_smuggling.run(weak_context(weak, tmp_path)))
    assert found["smuggling.data"].severity is Severity.OK
    assert found["smuggling.bdat"].severity is Severity.INFO
    assert found["smuggling.bare_lf"].severity is Severity.MEDIUM
    assert "without splitting" in found["smuggling.bare_lf"].evidence
    assert found["smuggling.bare_cr"].severity is Severity.LOW


async def test_submission_smuggling_probe_logs_in(start_weak: Any, tmp_path: Path) -> None:
    weak = start_weak(split_on=POSTFIX_LIKE_SPLIT)
    found = by_id(await probe_smuggling.run(weak_context(weak, tmp_path, kind="submission")))
    assert found["smuggling.data"].severity is Severity.CRITICAL
    no_login = by_id(await probe_smuggling.run(weak_context(weak, tmp_path, kind="submission", login=None)))
    assert no_login["smuggling.data"].severity is Severity.INFO


async def test_hardmail_is_not_smuggled(hardmail: ServerThread) -> None:
    findings = await probe_smuggling.run(hardmail_context(hardmail, "smtp", "submission", "submissions"))
    assert len(findings) == 12
    assert {f.severity for f in findings} == {Severity.OK}
    delivered = [subject(m) for m in hardmail.messages(PROBE.address)]
    assert "hardmail audit probe (smuggled)" not in delivered  # a NUL before the dot is content, not an end


# --- STARTTLS injection -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["smtp", "imap", "pop3"])
async def test_starttls_injection_is_critical(start_weak: Any, tmp_path: Path, protocol: str) -> None:
    weak = start_weak(protocol=protocol, starttls_injection=True)
    [finding] = await probe_starttls.run(weak_context(weak, tmp_path, kind=protocol))
    assert finding.severity is Severity.CRITICAL, finding
    assert "injected command was answered" in finding.evidence
    safe = start_weak(protocol=protocol)
    [finding] = await probe_starttls.run(weak_context(safe, tmp_path, kind=protocol))
    assert finding.severity is Severity.OK, finding


async def test_hardmail_discards_pipelined_plaintext(hardmail: ServerThread) -> None:
    ctx = hardmail_context(hardmail, "smtp", "submission", "submissions", "imap", "pop3")
    findings = await probe_starttls.run(ctx)
    assert [(f.target, f.severity) for f in findings] == [(t.label, Severity.OK) for t in ctx.targets
                                                           if not t.implicit_tls]

