"""The audit's configuration checks: each against a configuration weak in exactly that way (the
finding appears, with the key to change) and against the defaults (ok), and the IP-range checks
against a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hardmail.config.schema import Config
from hardmail.config.warnings import insecure_warnings
from hardmail.core.clock import FakeClock
from hardmail.msgauth.dns import StaticResolver
from hardmail.ops.audit import checks_config
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import Finding, Severity
from hardmail.policy.access import ALL_DIRECTIONS, IpRange
from hardmail.store import open_store
from hardmail.store.ports import Store

# Off by default, so the defaults give a low finding for them (documented in docs/audit.md)
OFF_BY_DEFAULT = {"config.greylisting", "config.dnsbl"}


def _config(overrides: dict[str, Any], tmp_path: Path | None = None) -> Config:
    data: dict[str, Any] = {}
    if tmp_path is not None:
        data["server"] = {"data_dir": str(tmp_path / "data")}
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        place = data
        for section in sections:
            place = place.setdefault(section, {})
        place[key] = value
    return Config.model_validate(data)


def _run(cfg: Config) -> dict[str, Finding]:
    """The findings without a store (the IP-range checks do not run)."""
    ctx = AuditContext(cfg, StaticResolver(), clock=FakeClock())
    return _by_id(asyncio.run(checks_config.run(ctx)))


def _by_id(findings: list[Finding]) -> dict[str, Finding]:
    by_id = {f.check: f for f in findings}
    assert len(by_id) == len(findings) == len(checks_config.CHECKS)
    assert set(by_id) == {c.id for c in checks_config.CHECKS}
    return by_id


def test_the_defaults_are_ok() -> None:
    found = _run(Config())
    for check, finding in found.items():
        if check in OFF_BY_DEFAULT:
            assert finding.severity is Severity.LOW, finding
        elif check.startswith("config.range_"):
            assert finding.severity is Severity.INFO  # no store: not checked
        else:
            assert finding.severity is Severity.OK, finding
            assert finding.fix == ""


WEAK = [
    ({"smtp.allow_plaintext_auth": True}, "config.plaintext_auth", Severity.CRITICAL, "smtp.allow_plaintext_auth"),
    ({"imap.allow_plaintext_login": True}, "config.plaintext_login", Severity.HIGH, "imap.allow_plaintext_login"),
    ({"pop3.allow_plaintext_login": True}, "config.plaintext_login", Severity.HIGH, "pop3.allow_plaintext_login"),
    ({"tls.min_version": "TLSv1.1"}, "config.tls_version", Severity.HIGH, "tls.min_version"),
    ({"relay.trusted_networks": ["0.0.0.0/1"]}, "config.trusted_networks", Severity.CRITICAL,
     "relay.trusted_networks"),
    ({"smtp.auth_on_mx": True}, "config.auth_on_mx", Severity.MEDIUM, "smtp.auth_on_mx"),
    ({"listen.smtp": ["0.0.0.0:25"]}, "config.self_signed", Severity.MEDIUM, "tls.cert_file"),
    ({"auth.session_check_seconds": 5}, "config.session_check", Severity.LOW, "auth.session_check_seconds"),
    ({"auth.argon2.per_source": 100}, "config.hash_pool", Severity.LOW, "auth.argon2.per_source"),
    ({"smtp.max_bytes_in_flight": 1000}, "config.message_cap", Severity.LOW, "smtp.max_bytes_in_flight"),
    ({"backup.enabled": False}, "config.backup", Severity.HIGH, "backup.enabled"),
    ({"backup.verify": False}, "config.backup", Severity.MEDIUM, "backup.verify"),
    ({"access.bans.failures": 50}, "config.auto_ban", Severity.MEDIUM, "access.bans.failures"),
    ({"access.bans.durations": [60.0]}, "config.auto_ban", Severity.LOW, "access.bans.durations"),
    ({"access.bans.never_ban": ["0.0.0.0/0"]}, "config.auto_ban", Severity.MEDIUM, "access.bans.never_ban"),
    ({"access.limits.connections_per_ip": 10_000}, "config.rate_limits", Severity.LOW,
     "access.limits.connections_per_ip"),
    ({"access.limits.messages_per_day": 1_000_000}, "config.rate_limits", Severity.LOW,
     "access.limits.messages_per_day"),
    ({"antispam.enabled": False}, "config.dnsbl", Severity.MEDIUM, "antispam.enabled"),
    ({"auth.argon2.memory_cost": 8192, "auth.argon2.time_cost": 4}, "config.argon2", Severity.MEDIUM,
     "memory_cost"),
    ({"auth.argon2.memory_cost": 19455, "auth.argon2.time_cost": 2}, "config.argon2", Severity.MEDIUM,
     "memory_cost"),
    ({"auth.argon2.memory_cost": 47103, "auth.argon2.time_cost": 1}, "config.argon2", Severity.MEDIUM,
     "memory_cost"),
    ({"audit.enabled": False}, "config.audit", Severity.MEDIUM, "audit.enabled"),
    ({"notices.enabled": False}, "config.notices", Severity.MEDIUM, "notices.enabled"),
    ({"notices.new_sign_in": False}, "config.notices", Severity.LOW, "notices.new_sign_in"),
    ({"notices.credential_changes": False}, "config.notices", Severity.LOW, "notices.credential_changes"),
    ({"impersonation.enabled": False}, "config.notices", Severity.LOW, "impersonation.enabled"),
]


@pytest.mark.parametrize(("overrides", "check", "severity", "key"), WEAK, ids=[w[1] + ":" + w[3] for w in WEAK])
def test_a_weak_setting_gives_its_finding_with_the_key_to_change(
        overrides: dict[str, Any], check: str, severity: Severity, key: str) -> None:
    found = _run(_config(overrides))
    assert found[check].severity is severity, found[check]
    assert key in found[check].fix
    others = {c: f.severity for c, f in found.items() if c != check and c not in OFF_BY_DEFAULT
              and not c.startswith("config.range_")}
    assert set(others.values()) == {Severity.OK}, others


OWASP_ENOUGH = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (8192, 5), (65536, 1)]


@pytest.mark.parametrize(("memory", "time"), OWASP_ENOUGH)
def test_argon2_at_or_above_an_owasp_pair_is_ok(memory: int, time: int) -> None:
    found = _run(_config({"auth.argon2.memory_cost": memory, "auth.argon2.time_cost": time}))
    assert found["config.argon2"].severity is Severity.OK


def test_switched_on_defences_are_ok() -> None:
    found = _run(_config({"greylist.enabled": True, "antispam.dnsbl": [{"zone": "zen.example.test"}]}))
    assert found["config.greylisting"].severity is Severity.OK
    assert found["config.dnsbl"].severity is Severity.OK
    assert "zen.example.test" in found["config.dnsbl"].evidence


def test_a_log_file_others_can_read(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "hardmail.log"
    log.parent.mkdir(mode=0o700)
    log.write_text("")
    log.chmod(0o600)
    assert _run(_config({"logging.file": str(log)}))["config.log_file"].severity is Severity.OK
    log.chmod(0o644)
    finding = _run(_config({"logging.file": str(log)}))["config.log_file"]
    assert finding.severity is Severity.MEDIUM
    assert "logging.file" in finding.fix and "chmod 600" in finding.fix


def test_every_warning_of_a_weak_config_is_sorted_into_a_check_of_its_own() -> None:
    cfg = _config({key: value for overrides, *_rest in WEAK for key, value in overrides.items()
                   if key.split(".")[0] in ("smtp", "imap", "pop3", "tls", "relay", "listen", "auth")})
    assert len(insecure_warnings(cfg)) >= 9
    found = _run(cfg)
    assert found["config.other_warnings"].severity is Severity.OK
    claimed = sum(len(f.details) for c, f in found.items() if c.startswith("config.") and f.details)
    assert claimed >= len(insecure_warnings(cfg))


def test_a_warning_no_check_claims_lands_in_other_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks_config, "insecure_warnings",
                        lambda cfg: ["something.new is risky: an attacker could use it; set it to off."])
    finding = _run(Config())["config.other_warnings"]
    assert finding.severity is Severity.MEDIUM
    assert finding.fix == "set it to off"
    assert finding.evidence == "something.new is risky"


# --- IP ranges in a real store -------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}")
    await opened.migrate()
    try:
        yield opened
    finally:
        await opened.close()


async def _range_findings(store: Store, *ranges: IpRange) -> dict[str, Finding]:
    for item in ranges:
        await store.access.add_range(item)
    ctx = AuditContext(Config(), StaticResolver(), store=store, clock=FakeClock())
    return _by_id(await checks_config.run(ctx))


NO_AUTH: frozenset[Any] = frozenset()


async def test_default_ranges_are_ok(store: Store) -> None:
    found = await _range_findings(store)
    assert found["config.range_open_relay"].severity is Severity.OK
    assert found["config.range_overlap"].severity is Severity.OK


async def test_a_range_of_the_whole_internet_without_auth_is_an_open_relay(store: Store) -> None:
    found = await _range_findings(store, IpRange("everyone", 20, "0.0.0.0", "255.255.255.255",
                                                 auth_required=NO_AUTH))
    finding = found["config.range_open_relay"]
    assert finding.severity is Severity.CRITICAL
    assert "everyone" in finding.evidence and "external-external" in finding.evidence
    assert "hardmail range remove" in finding.fix


async def test_an_ipv6_range_of_public_space_without_auth_is_an_open_relay(store: Store) -> None:
    found = await _range_findings(store, IpRange("v6", 20, "2000::", "3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                                 auth_required=NO_AUTH))
    assert found["config.range_open_relay"].severity is Severity.CRITICAL


async def test_own_networks_relaying_without_auth_are_fine(store: Store) -> None:
    found = await _range_findings(
        store,
        IpRange("office", 20, "192.0.2.0", "192.0.2.255", auth_required=NO_AUTH),
        IpRange("lan", 20, "10.0.0.0", "10.255.255.255", auth_required=NO_AUTH),
        IpRange("no-delivery", 20, "0.0.0.0", "255.255.255.255", deliveries=frozenset(), auth_required=NO_AUTH),
    )
    assert found["config.range_open_relay"].severity is Severity.OK


async def test_an_expired_open_range_is_not_counted(store: Store) -> None:
    found = await _range_findings(store, IpRange("old", 20, "0.0.0.0", "255.255.255.255", auth_required=NO_AUTH,
                                                 expires_at=FakeClock().now() - 1))
    assert found["config.range_open_relay"].severity is Severity.OK


async def test_a_narrower_range_of_lower_priority_is_hidden(store: Store) -> None:
    found = await _range_findings(store, IpRange("blocked", 5, "198.51.100.0", "198.51.100.255",
                                                 protocols=frozenset(), deliveries=ALL_DIRECTIONS))
    finding = found["config.range_overlap"]
    assert finding.severity is Severity.MEDIUM
    assert "blocked" in finding.evidence and "Internet" in finding.evidence and "never applies" in finding.evidence


async def test_ranges_of_one_priority_that_cross(store: Store) -> None:
    found = await _range_findings(store, IpRange("a", 20, "10.0.0.0", "10.0.0.200"),
                                  IpRange("b", 20, "10.0.0.100", "10.0.0.255"))
    finding = found["config.range_overlap"]
    assert finding.severity is Severity.LOW
    assert "a and b" in finding.evidence


async def test_nested_ranges_of_one_priority_are_expected(store: Store) -> None:
    found = await _range_findings(store, IpRange("wide", 20, "10.0.0.0", "10.0.255.255"),
                                  IpRange("narrow", 20, "10.0.1.0", "10.0.1.255"))
    assert found["config.range_overlap"].severity is Severity.OK
