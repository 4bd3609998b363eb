"""``--only domain`` and ``--only settings``: domains, accounts with their credentials, aliases,
ranges, settings rows, routes, DKIM keys, quotas and the configuration file merged into another
live data directory (its own server key), through the store interfaces."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pyotp
import pytest
from cryptography.fernet import Fernet

from hardmail.admin.credentials import CredentialService
from hardmail.auth import totp
from hardmail.auth.app_passwords import app_password_digest
from hardmail.auth.hashing import verify_password
from hardmail.auth.server_key import load_or_create_server_key, server_key_path
from hardmail.ops.backup.selective import SelectiveError, restore_selective
from hardmail.ops.backup.selective_settings import RESTORING_HASH
from hardmail.policy.access import IpRange
from hardmail.store.ports_queue import Route
from support.selective_archive import Server, config_for, open_server, write_archive

DOMAIN = "example.test"
ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
OTHER = "dave@other.test"
PASSWORD = "correct horse battery staple"
WHEN = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Server]:
    opened = await open_server(config_for(tmp_path / "source"))
    try:
        yield opened
    finally:
        await opened.store.close()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Server]:
    opened = await open_server(config_for(tmp_path / "target"))
    load_or_create_server_key(opened.config.data_dir)  # a server key of its own: secrets are re-encrypted
    try:
        yield opened
    finally:
        await opened.store.close()


async def _populate(server: Server) -> dict[str, str]:
    """Two domains with accounts, 2FA, app passwords, aliases, DKIM keys, a range, a route, mail."""
    admin = server.admin
    for domain in (DOMAIN, "other.test"):
        await admin.add_domain(domain)
    for address in (ALICE, BOB, CAROL, OTHER):
        await admin.add_account(address, PASSWORD + address[0])
    await admin.add_alias("sales@example.test", [ALICE, BOB])
    await admin.add_alias("@example.test", [ALICE])
    await admin.set_account_enabled(CAROL, False)
    await admin.freeze_account(BOB, "phished")
    credentials = CredentialService(server.store, server.config.data_dir)
    enrolment = await credentials.begin_two_factor(ALICE)
    codes = await credentials.confirm_two_factor(enrolment, pyotp.TOTP(enrolment.secret).now())
    _, app_password = await credentials.add_app_password(ALICE, "phone", ["imap", "smtp"])
    await server.mailboxes.set_quota(ALICE, 5_000_000, None)
    await server.mailboxes.append(ALICE, "INBOX", b"Subject: kept\r\n\r\nhello\r\n", ["\\Seen"], WHEN)
    await server.store.access.add_range(IpRange("office", 20, "192.0.2.0", "192.0.2.255"))
    await server.store.set_setting("tls-policy:example.net", '{"mode": "enforce"}')
    token = Fernet(load_or_create_server_key(server.config.data_dir)).encrypt(b"route secret").decode()
    await server.store.queue.set_route(Route("smarthost.test", "relay.example.net", 587, "starttls", "user", token))
    for domain in (DOMAIN, "other.test"):
        keys = server.config.data_dir / "dkim" / domain
        keys.mkdir(parents=True)
        (keys / "2024r.key").write_text(f"key of {domain}\n")
        (keys / "state.json").write_text("{}\n")
    return {"secret": enrolment.secret, "recovery": codes[0], "app": app_password}


async def test_a_domain_comes_back_into_a_server_without_it(source: Server, target: Server, tmp_path: Path) -> None:
    secrets = await _populate(source)
    archive, _ = write_archive(source.config.data_dir, tmp_path / "backups")

    report = await restore_selective(target.config, archive, "domain", "Example.TEST")

    live = target.store
    assert await live.get_domain(DOMAIN) is not None and await live.get_domain("other.test") is None
    assert {a.address for a in await live.list_accounts()} == {ALICE, BOB, CAROL}
    alice = await live.get_account(ALICE)
    assert alice is not None and verify_password(alice.password_hash, PASSWORD + "a", target.config.auth.argon2).ok
    state = await live.credentials.get_credentials(ALICE)
    assert state is not None and state.scram is not None and state.totp_secret is not None
    live_key = load_or_create_server_key(target.config.data_dir)
    assert totp.decrypt_secret(state.totp_secret, live_key) == secrets["secret"]  # re-encrypted with the live key
    service = CredentialService(live, target.config.data_dir)
    assert await service.verify_second_factor(ALICE, secrets["recovery"]) == "recovery-code"
    [app] = await live.credentials.list_app_passwords(ALICE)
    assert (app.name, app.scopes) == ("phone", frozenset({"imap", "smtp"}))
    assert await live.credentials.find_app_password(ALICE, app_password_digest(secrets["app"])) is not None
    bob, carol = await live.get_account(BOB), await live.get_account(CAROL)
    assert bob is not None and bob.frozen and bob.frozen_reason == "phished"
    assert carol is not None and not carol.enabled
    assert {a.source for a in await live.list_aliases()} == {"sales@example.test", "@example.test"}
    assert (await target.mailboxes.quota(ALICE)).storage_limit == 5_000_000
    assert (target.config.data_dir / "dkim" / DOMAIN / "2024r.key").read_text() == f"key of {DOMAIN}\n"
    assert not (target.config.data_dir / "dkim" / "other.test").exists()
    assert await live.access.list_ranges() == [] and await live.queue.list_routes() == []  # server-wide: not here
    inbox = await target.mailboxes.sync(ALICE, "INBOX")
    assert [m.flags for m in inbox.messages] == [frozenset({"\\Seen"})]
    assert report.added["account"] == 3 and report.added["alias"] == 2 and report.messages_added == 1
    assert report.mailboxes == 3


async def test_what_exists_live_is_left_as_it_is(source: Server, target: Server, tmp_path: Path) -> None:
    await _populate(source)
    archive, _ = write_archive(source.config.data_dir, tmp_path / "backups")
    await target.admin.add_domain(DOMAIN)
    await target.admin.add_account(ALICE, "a different long passphrase")
    live_keys = target.config.data_dir / "dkim" / DOMAIN
    live_keys.mkdir(parents=True)
    (live_keys / "2025r.key").write_text("the live key\n")

    report = await restore_selective(target.config, archive, "domain", DOMAIN)

    alice = await target.store.get_account(ALICE)
    assert alice is not None and verify_password(alice.password_hash, "a different long passphrase",
                                                 target.config.auth.argon2).ok
    state = await target.store.credentials.get_credentials(ALICE)
    assert state is not None and state.totp_secret is None
    assert sorted(p.name for p in live_keys.iterdir()) == ["2025r.key"]
    assert report.skipped["domain"] == (DOMAIN,) and report.skipped["account"] == (ALICE,)
    assert report.skipped["dkim keys"] == (DOMAIN,)
    assert report.added["account"] == 2
    assert any("already there and left as they are (alice@example.test)" in line for line in report.lines())
    assert report.messages_added == 1  # alice's mailbox is merged all the same


async def test_settings_restores_everything_but_mail(source: Server, target: Server, tmp_path: Path) -> None:
    await _populate(source)
    config_file = tmp_path / "source.toml"
    config_file.write_text('[server]\nhostname = "mail.example.test"\n')
    archive, _ = write_archive(source.config.data_dir, tmp_path / "backups", config_file=config_file)
    live_config = tmp_path / "live" / "hardmail.toml"
    live_config.parent.mkdir()
    live_config.write_text("# the live configuration\n")

    report = await restore_selective(target.config, archive, "settings", None, config_file=live_config)

    live = target.store
    assert {d.name for d in await live.list_domains()} == {DOMAIN, "other.test"}
    assert len(await live.list_accounts()) == 4
    assert [r.name for r in await live.access.list_ranges()] == ["office"]
    assert await live.get_setting("tls-policy:example.net") == '{"mode": "enforce"}'
    [route] = await live.queue.list_routes()
    assert Fernet(load_or_create_server_key(target.config.data_dir)).decrypt(route.password_encrypted.encode()) == (
        b"route secret")
    assert (target.config.data_dir / "dkim" / "other.test" / "state.json").exists()
    assert live_config.read_text() == "# the live configuration\n"
    restored = live_config.with_name("hardmail.toml.restored")
    assert restored.read_text() == config_file.read_text() and report.config_written == restored
    assert report.messages_added == 0 and (await target.mailboxes.sync(ALICE, "INBOX")).messages == []

    config_file.write_text("# changed since\n")
    second, _ = write_archive(source.config.data_dir, tmp_path / "backups", config_file=config_file)
    again = await restore_selective(target.config, second, "settings", None, config_file=live_config)
    assert again.config_written == live_config.with_name("hardmail.toml.restored.1")
    assert again.added.get("account", 0) == 0 and len(again.skipped["account"]) == 4


async def test_secrets_no_key_opens(source: Server, target: Server, tmp_path: Path) -> None:
    await _populate(source)
    without_key = tmp_path / "without-key"
    without_key.mkdir()
    shutil.copytree(source.config.data_dir, without_key / "data")
    server_key_path(without_key / "data").unlink()  # an archive without the key the secrets were made with
    archive, _ = write_archive(without_key / "data", tmp_path / "backups2")

    report = await restore_selective(target.config, archive, "settings", None)

    state = await target.store.credentials.get_credentials(ALICE)
    assert state is not None and state.two_factor  # the main password stays refused for mail
    assert any("two-factor secret of alice@example.test cannot be read" in w for w in report.warnings)
    assert await target.store.queue.list_routes() == []  # a route whose password cannot be read is left out
    assert any("the AUTH password of the route smarthost.test cannot be read" in w for w in report.warnings)
    assert not any("secret" in line and "=" in line for line in report.lines())


async def test_an_interrupted_account_restore_is_completed(source: Server, target: Server, tmp_path: Path) -> None:
    await _populate(source)
    archive, _ = write_archive(source.config.data_dir, tmp_path / "backups")
    await target.store.add_domain(DOMAIN)
    await target.store.add_account(ALICE, RESTORING_HASH)  # as a crash right after the first step leaves it

    report = await restore_selective(target.config, archive, "domain", DOMAIN)

    alice = await target.store.get_account(ALICE)
    assert alice is not None and alice.password_hash != RESTORING_HASH
    assert "account" not in report.skipped


@pytest.mark.parametrize(("kind", "value", "as_folder", "text"), [
    ("settings", "example.test", None, "takes no value"),
    ("settings", None, "Restored", "--as-folder applies to mail"),
    ("domain", None, None, "is not something to restore"),
    ("mailbox", "not an address", None, "invalid address"),
    ("mailbox", ALICE, "INBOX", "cannot be INBOX"),
    ("mailbox", ALICE, "a.b", "'.' is not allowed"),
])
async def test_requests_that_make_no_sense_are_refused(target: Server, tmp_path: Path, kind: str,
                                                        value: str | None, as_folder: str | None, text: str) -> None:
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(target.config, tmp_path / "none.tar.zst", kind, value,  # type: ignore[arg-type]
                                as_folder=as_folder)
    assert text in raised.value.message and raised.value.hint


async def test_a_domain_the_archive_does_not_have(source: Server, target: Server, tmp_path: Path) -> None:
    await _populate(source)
    archive, _ = write_archive(source.config.data_dir, tmp_path / "backups")
    with pytest.raises(SelectiveError) as raised:
        await restore_selective(target.config, archive, "domain", "absent.test")
    assert raised.value.message == "the archive has no domain absent.test"
