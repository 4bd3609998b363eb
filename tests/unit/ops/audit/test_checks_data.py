"""The audit's data checks on a real SQLite store and a real data directory: each against data weak
in exactly that way (the finding appears, with its fix) and against a well-kept server (ok)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hardmail.auth.server_key import load_or_create_server_key, server_key_path
from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from hardmail.ops.audit import checks_data
from hardmail.ops.audit.context import AuditContext
from hardmail.ops.audit.findings import Finding, Severity
from hardmail.ops.backup.health import record_attempt
from hardmail.store import open_store
from hardmail.store.ports import Store
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.sql.migrate import revision_chain
from support.small_disk import small_tmpfs

DAY = 86400.0
DOMAIN = "example.test"
USER = f"user@{DOMAIN}"
POSTMASTER = f"postmaster@{DOMAIN}"


@dataclass
class Server:
    cfg: Config
    store: Store
    clock: FakeClock

    @property
    def data_dir(self) -> Path:
        return self.cfg.data_dir

    def at(self, days: float = 0.0) -> datetime:
        """The fake clock's time ``days`` from now (negative: ago)."""
        return datetime.fromtimestamp(self.clock.now() + days * DAY, UTC)

    async def audit(self, **audit: Any) -> dict[str, Finding]:
        cfg = self.cfg.model_copy(update={"audit": self.cfg.audit.model_copy(update=audit)}) if audit else self.cfg
        ctx = AuditContext(cfg, StaticResolver(), store=self.store, clock=self.clock)
        findings = await checks_data.run(ctx)
        by_id = {f.check: f for f in findings}
        assert len(by_id) == len(findings) == len(checks_data.CHECKS)
        return by_id

    async def login(self, address: str, days: float = 0.0) -> None:
        await self.store.credentials.append_login_event(
            LoginEvent(self.at(days), address, "login", "success", "imap", "PLAIN", "127.0.0.1"))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """A well-kept server: an account and a postmaster with TOTP who logged in today, a DKIM key made
    today, a verified backup an hour old, private modes everywhere."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    cfg = Config.model_validate({"server": {"data_dir": str(data_dir)}, "audit": {"disk_free_min_percent": 0}})
    clock = FakeClock(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    store = await open_store(cfg.database_url, clock=clock)
    await store.migrate()
    await store.add_domain(DOMAIN)
    for address in (USER, POSTMASTER):
        await store.add_account(address, "$argon2id$v=19$m=65536,t=3,p=1$x$y")
    await store.credentials.set_totp(POSTMASTER, "encrypted-secret", [])
    load_or_create_server_key(data_dir)
    DomainKeys(data_dir, DOMAIN).generate(clock.now())
    record_attempt(data_dir, ok=True, verified=True, archive="hardmail-a-full", full=True,
                   at=datetime.fromtimestamp(clock.now() - 3600, UTC))
    made = Server(cfg, store, clock)
    await made.login(USER)
    await made.login(POSTMASTER)
    try:
        yield made
    finally:
        await store.close()


async def test_a_well_kept_server_is_ok(server: Server) -> None:
    found = await server.audit()
    assert {c: f.severity for c, f in found.items() if f.severity is not Severity.OK} == {}
    assert found["data.key_modes"].evidence.startswith("3 key files")  # server.key and two DKIM keys


async def test_without_a_store_nothing_runs(tmp_path: Path) -> None:
    findings = await checks_data.run(AuditContext(Config(), StaticResolver(), store=None))
    assert {f.severity for f in findings} == {Severity.INFO}
    assert len(findings) == len(checks_data.CHECKS)


# --- legacy hashes ----------------------------------------------------------------------------


async def _import_legacy(server: Server, address: str, days_ago: float) -> None:
    await server.store.credentials.set_password(address, "$1$salt$hash", None, legacy_scheme="md5-crypt")
    await server.store.credentials.append_login_event(
        LoginEvent(server.at(-days_ago), address, "hash-imported", "done", "admin", detail="md5-crypt"))


async def test_a_recent_legacy_hash_is_low(server: Server) -> None:
    await _import_legacy(server, USER, days_ago=10)
    finding = (await server.audit())["data.legacy_hashes"]
    assert finding.severity is Severity.LOW
    assert finding.details == (f"{USER}: md5-crypt since 2026-02-19 (10 days)",)
    assert "hardmail account must-change" in finding.fix


async def test_an_old_legacy_hash_is_medium(server: Server) -> None:
    await _import_legacy(server, USER, days_ago=40)
    finding = (await server.audit())["data.legacy_hashes"]
    assert finding.severity is Severity.MEDIUM
    assert "1 of them for more than 30 days" in finding.evidence
    assert (await server.audit(legacy_hash_max_days=60))["data.legacy_hashes"].severity is Severity.LOW


# --- admin accounts without TOTP ----------------------------------------------------------------


async def test_a_postmaster_without_totp(server: Server) -> None:
    await server.store.credentials.set_totp(POSTMASTER, None, [])
    finding = (await server.audit())["data.admin_totp"]
    assert finding.severity is Severity.MEDIUM
    assert finding.fix == f"hardmail account 2fa enable {POSTMASTER}"


async def test_an_alias_of_an_admin_name_makes_its_target_an_admin(server: Server) -> None:
    await server.store.add_alias(f"abuse@{DOMAIN}", (USER,))
    finding = (await server.audit())["data.admin_totp"]
    assert finding.severity is Severity.MEDIUM
    assert finding.details == (USER,)


# --- idle accounts and app passwords ------------------------------------------------------------


async def test_an_account_without_a_login_for_90_days(server: Server) -> None:
    server.clock.advance(100 * DAY)
    await server.login(POSTMASTER)
    finding = (await server.audit())["data.idle_accounts"]
    assert finding.severity is Severity.LOW
    assert finding.details == (f"{USER}: last login 2026-03-01 (100 days)",)
    assert "hardmail account disable" in finding.fix
    assert (await server.audit(idle_account_days=120))["data.idle_accounts"].severity is Severity.OK


async def test_an_account_that_never_logged_in(server: Server) -> None:
    await server.store.add_account(f"new@{DOMAIN}", "x")
    assert (await server.audit())["data.idle_accounts"].severity is Severity.OK  # new: not idle yet
    server.clock.advance(91 * DAY)
    for address in (USER, POSTMASTER):
        await server.login(address)
    finding = (await server.audit())["data.idle_accounts"]
    assert finding.details == (f"new@{DOMAIN}: never logged in (created 2026-03-01)",)


async def test_a_disabled_account_is_not_idle(server: Server) -> None:
    server.clock.advance(100 * DAY)
    await server.login(POSTMASTER)
    await server.store.set_account_enabled(USER, False)
    assert (await server.audit())["data.idle_accounts"].severity is Severity.OK


async def test_app_passwords_never_used_or_not_lately(server: Server) -> None:
    credentials = server.store.credentials
    unused = await credentials.add_app_password(USER, "phone", "d1", frozenset({"imap"}), None)
    used = await credentials.add_app_password(USER, "laptop", "d2", frozenset({"imap"}), None)
    await credentials.add_app_password(USER, "expired", "d3", frozenset({"imap"}), server.at(30))
    await credentials.touch_app_password(used.id, server.at(), "127.0.0.1")
    assert (await server.audit())["data.app_passwords"].severity is Severity.OK
    server.clock.advance(95 * DAY)
    await credentials.touch_app_password(used.id, server.at(-1), "127.0.0.1")
    finding = (await server.audit())["data.app_passwords"]
    assert finding.severity is Severity.LOW
    assert finding.details == (f"{USER} {unused.name!r}: never used (created 2026-03-01)",)
    assert finding.fix == f"hardmail account app-password revoke {USER} phone"
    server.clock.advance(95 * DAY)
    finding = (await server.audit())["data.app_passwords"]
    assert len(finding.details) == 2
    assert any(line.startswith(f"{USER} 'laptop': last used 2026-06-03 (96 days)") for line in finding.details)


# --- DKIM -----------------------------------------------------------------------------------


async def test_an_old_dkim_key(server: Server) -> None:
    server.clock.advance(400 * DAY)
    finding = (await server.audit(backup_max_age_hours=1e6, idle_account_days=1000))["data.dkim_key_age"]
    assert finding.severity is Severity.LOW
    assert "400 days old" in finding.evidence
    assert finding.fix == f"hardmail dkim rotate {DOMAIN}"


async def test_a_domain_without_dkim_keys(server: Server) -> None:
    await server.store.add_domain("other.test")
    finding = (await server.audit())["data.dkim_key_age"]
    assert finding.severity is Severity.LOW
    assert finding.fix == "hardmail dkim generate other.test"


# --- backups and disk ---------------------------------------------------------------------------


async def test_no_backup_yet_on_a_new_server_is_low(server: Server) -> None:
    (server.data_dir / "backup-state" / "health.json").unlink()
    finding = (await server.audit())["data.backup_age"]
    assert finding.severity is Severity.LOW
    assert "the first scheduled one is due at" in finding.evidence


async def test_no_backup_ever_is_high(server: Server) -> None:
    (server.data_dir / "backup-state" / "health.json").unlink()
    server.clock.advance(40 * 3600)  # the server was set up longer ago than audit.backup_max_age_hours
    finding = (await server.audit())["data.backup_age"]
    assert finding.severity is Severity.HIGH
    assert "no verified backup was ever made" in finding.evidence and "hardmail backup create" in finding.fix


async def test_an_old_backup(server: Server) -> None:
    server.clock.advance(40 * 3600)
    assert (await server.audit())["data.backup_age"].severity is Severity.MEDIUM
    server.clock.advance(100 * 3600)
    finding = (await server.audit())["data.backup_age"]
    assert finding.severity is Severity.HIGH
    assert "141.0 hours old" in finding.evidence
    record_attempt(server.data_dir, ok=True, verified=True, archive="b", at=server.at())
    assert (await server.audit())["data.backup_age"].severity is Severity.OK


async def test_an_unverified_backup_does_not_count(server: Server) -> None:
    server.clock.advance(40 * 3600)
    record_attempt(server.data_dir, ok=True, verified=False, archive="c", at=server.at())
    finding = (await server.audit())["data.backup_age"]
    assert finding.severity is Severity.MEDIUM
    assert "1 attempt since then did not succeed" in finding.evidence


async def test_free_disk_below_the_threshold(server: Server) -> None:
    assert (await server.audit(disk_free_min_percent=0.0))["data.disk_free"].severity is Severity.OK
    finding = (await server.audit(disk_free_min_percent=100.0))["data.disk_free"]
    assert finding.severity is Severity.HIGH
    assert "audit.disk_free_min_percent" in finding.evidence


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 4 MiB tmpfs (root only)."""
    with small_tmpfs("4m", mode="0700", prefix="hardmail-audit-disk-") as mount_point:
        yield mount_point


async def test_a_nearly_full_disk_at_the_default_threshold(small_disk: Path) -> None:
    cfg = Config.model_validate({"server": {"data_dir": str(small_disk)}})
    ctx = AuditContext(cfg, StaticResolver(), clock=FakeClock())
    assert checks_data.disk_finding(ctx).severity is Severity.OK
    filler = small_disk / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while os.statvfs(small_disk).f_bavail * 100 >= 5 * os.statvfs(small_disk).f_blocks:
            out.write(b"\0" * 65536)
            out.flush()
    finding = checks_data.disk_finding(ctx)
    assert finding.severity is Severity.HIGH
    assert "below 10 %" in finding.evidence


# --- file modes ----------------------------------------------------------------------------------


async def test_a_world_readable_server_key_is_critical(server: Server) -> None:
    path = server_key_path(server.data_dir)
    path.chmod(0o644)
    finding = (await server.audit())["data.key_modes"]
    assert finding.severity is Severity.CRITICAL
    assert finding.fix == f"chmod 600 {path}"


async def test_a_group_readable_dkim_key_is_high(server: Server) -> None:
    key = sorted((server.data_dir / "dkim" / DOMAIN).glob("*.key"))[0]
    key.chmod(0o640)
    finding = (await server.audit())["data.key_modes"]
    assert finding.severity is Severity.HIGH
    assert str(key) in finding.evidence and "its group can read it" in finding.evidence


async def test_a_configured_tls_key_and_certificate(server: Server, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    for path in (cert, key):
        path.write_text("PEM")
    cert.chmod(0o644)
    key.chmod(0o600)
    server.cfg = server.cfg.model_copy(update={"tls": server.cfg.tls.model_copy(
        update={"cert_file": cert, "key_file": key})})
    found = await server.audit()
    assert found["data.key_modes"].severity is Severity.OK
    assert found["data.data_modes"].severity is Severity.OK  # a certificate is public
    key.chmod(0o604)
    cert.chmod(0o666)
    found = await server.audit()
    assert found["data.key_modes"].severity is Severity.CRITICAL
    assert found["data.data_modes"].severity is Severity.HIGH
    assert "other users can write to it" in found["data.data_modes"].evidence


async def test_a_certificate_file_holding_its_key_counts_as_a_key(server: Server, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_text("PEM")
    both.chmod(0o644)
    server.cfg = server.cfg.model_copy(update={"tls": server.cfg.tls.model_copy(update={"cert_file": both})})
    assert (await server.audit())["data.key_modes"].severity is Severity.CRITICAL


async def test_an_open_data_directory_and_database(server: Server) -> None:
    server.data_dir.chmod(0o755)
    found = (await server.audit())["data.data_modes"]
    assert found.severity is Severity.HIGH
    assert f"chmod 700 {server.data_dir}" in found.fix
    server.data_dir.chmod(0o700)
    database = server.data_dir / "hardmail.db"
    database.chmod(0o640)
    found = (await server.audit())["data.data_modes"]
    assert found.severity is Severity.MEDIUM
    assert f"chmod 600 {database}" in found.fix


# --- schema --------------------------------------------------------------------------------------


def _stamp(server: Server, revision: str) -> None:
    with contextlib.closing(sqlite3.connect(server.data_dir / "hardmail.db")) as connection, connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))


async def test_a_database_behind_this_build(server: Server) -> None:
    _stamp(server, revision_chain()[-2])
    finding = (await server.audit())["data.schema_version"]
    assert finding.severity is Severity.HIGH
    assert "behind this build" in finding.evidence and revision_chain()[-1] in finding.evidence
    assert finding.fix == "hardmail upgrade"


async def test_a_database_ahead_of_this_build(server: Server) -> None:
    _stamp(server, "9999_from_the_future")
    finding = (await server.audit())["data.schema_version"]
    assert finding.severity is Severity.HIGH
    assert "ahead of this build" in finding.evidence
