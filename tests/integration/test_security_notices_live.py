"""Security notices on a real server: logins over real sockets from 127.0.0.x source addresses,
credential changes made through the admin services as the CLI makes them, the notices read from
the account's Maildir (polled with a deadline), the weekly digest with an injected clock on the
real store, and a two-worker ``hardmail serve``."""

from __future__ import annotations

import asyncio
import base64
import email.policy
import imaplib
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hardmail.admin.credentials import CredentialService
from hardmail.admin.service import AdminService
from hardmail.auth import totp
from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.delivery.maildir import MaildirStore
from hardmail.msgauth.dkim import verify
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from hardmail.server.security_notices import CURSOR_KEY, InboxDelivery, SecurityNotices
from hardmail.store import open_store
from hardmail.store.ports import Store
from support.cli_process import LoggedServe, cli_env, free_loopback_port, run_cli, seed_account
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    EPHEMERAL_LISTEN,
    HOSTNAME,
    ServerThread,
    client_tls_context,
    delivery_order,
    running_server,
    server_config,
)
from support.msgauth_dns import txt_value

WAIT = 60.0
NEW_PASSWORD = "a brand new long passphrase 99"
SIGN_IN = "Security notice: new sign-in to your mailbox"


def wait_until(condition: Callable[[], Any], what: str, deadline: float = WAIT) -> Any:
    end = time.monotonic() + deadline
    while not (value := condition()):
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {deadline:.0f} s")
        threading.Event().wait(0.02)  # a poll step, not a wait for the condition itself
    return value


def notice_files(maildir: Path) -> list[bytes]:
    return [p.read_bytes() for sub in ("new", "cur") if (maildir / sub).is_dir()
            for p in sorted((maildir / sub).iterdir(), key=delivery_order)]


def subjects(files: list[bytes]) -> list[str]:
    return [str(message_from_bytes(data, policy=email.policy.default)["Subject"]) for data in files]


class SourcedImap(imaplib.IMAP4_SSL):
    """IMAP over TLS from a chosen loopback source address."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.source = source
        super().__init__(host, port, ssl_context=client_tls_context(), timeout=WAIT)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        context: ssl.SSLContext = self.ssl_context
        return context.wrap_socket(sock, server_hostname=self.host)


def imap_login(server: ServerThread, source: str, password: str = ALICE_PASSWORD) -> None:
    host, port = server.address("imaps")
    client = SourcedImap(host, port, source)
    try:
        client.login(ALICE, password)
    finally:
        client.logout()


def smtp_login(host: str, port: int, source: str, password: str = ALICE_PASSWORD) -> None:
    with smtplib.SMTP(host, port, timeout=WAIT, source_address=(source, 0)) as client:
        client.starttls(context=client_tls_context())
        client.login(ALICE, password)


class Notices:
    """The notices in Alice's INBOX of a server run in this process, and the feed's progress."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        assert server.server is not None
        self.store = server.server.context.store
        self.maildir = server.server.context.acceptor.maildir.mailbox_path(ALICE)

    def files(self) -> list[bytes]:
        return notice_files(self.maildir)

    def wait_for(self, count: int) -> list[bytes]:
        wait_until(lambda: len(self.files()) >= count, f"{count} notice(s)")
        self.caught_up()
        files = self.files()
        assert len(files) == count, subjects(files)
        return files

    def caught_up(self) -> None:
        """Wait until the feed has handled every login-history row written so far."""
        latest = self.server.run(self.store.security.latest_login_event_id())
        wait_until(lambda: int(self.server.run(self.store.get_setting(CURSOR_KEY)) or 0) >= latest,
                   f"the feed at event {latest}")


def config_with(data_dir: Path, **notices: Any) -> Config:
    return server_config(data_dir, notices={"poll_interval": 0.05, **notices})


BASELINE = "127.0.1.1"  # in no /24 of the sources the tests sign in from afterwards


def baseline(server: ServerThread, notices: Notices) -> None:
    """Alice's first sign-in ever: it sets her baseline and gets no notice."""
    imap_login(server, BASELINE)
    notices.caught_up()
    assert notices.files() == []


@pytest.fixture
def alice_server(tmp_path: Path) -> Iterator[tuple[ServerThread, Notices]]:
    with running_server(config_with(tmp_path / "data")) as server:
        yield server, Notices(server)


def test_new_source_one_notice_then_none(alice_server: tuple[ServerThread, Notices]) -> None:
    server, notices = alice_server
    baseline(server, notices)
    imap_login(server, "127.0.0.2")
    [first] = notices.wait_for(1)
    assert subjects([first]) == [SIGN_IN]
    text = message_from_bytes(first, policy=email.policy.default).get_body().get_content()  # type: ignore[union-attr]
    assert "From:   127.0.0.2" in text and "IMAP (reading mail), LOGIN, over TLSv1." in text
    assert f"hardmail account passwd {ALICE}" in text
    imap_login(server, "127.0.0.2")
    smtp_login(*server.address("submission"), "127.0.0.2")
    notices.wait_for(1)  # the same source again, over another protocol: nothing
    smtp_login(*server.address("submission"), "127.0.0.3")
    assert subjects(notices.wait_for(2)) == [SIGN_IN, SIGN_IN]
    for data in notices.files():
        assert_no_secret(data, ALICE_PASSWORD)


def test_first_sign_in_notified_when_asked(tmp_path: Path) -> None:
    with running_server(config_with(tmp_path / "data", first_sign_in=True)) as server:
        notices = Notices(server)
        imap_login(server, "127.0.0.2")
        assert subjects(notices.wait_for(1)) == [SIGN_IN]


def test_failed_login_makes_no_notice(alice_server: tuple[ServerThread, Notices]) -> None:
    server, notices = alice_server
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(server, "127.0.0.4", "wrong password entirely")
    notices.caught_up()
    assert notices.files() == []


def test_known_network_with_prefix_24(tmp_path: Path) -> None:
    with running_server(config_with(tmp_path / "data", ipv4_prefix=24)) as server:
        notices = Notices(server)
        baseline(server, notices)
        imap_login(server, "127.0.0.2")
        notices.wait_for(1)
        imap_login(server, "127.0.0.3")
        notices.caught_up()
        assert len(notices.files()) == 1


def _credential_changes(server: ServerThread) -> str:
    """Create an app password, turn 2FA on and off, change the password (as the CLI does); the
    app password's text."""
    config = server.config
    store = server.server.context.store  # type: ignore[union-attr]
    credentials = CredentialService(store, config.data_dir, config.auth.two_factor)
    _record, secret = server.run(credentials.add_app_password(ALICE, "phone", ["imap", "smtp"]))
    enrolment = server.run(credentials.begin_two_factor(ALICE))
    server.run(credentials.confirm_two_factor(enrolment, totp.code_at(enrolment.secret, totp.time_step(time.time()))))
    server.run(credentials.disable_two_factor(ALICE))
    server.run(AdminService(store, config.auth.argon2).set_password(ALICE, NEW_PASSWORD))
    return secret


def test_one_notice_per_credential_change(alice_server: tuple[ServerThread, Notices]) -> None:
    server, notices = alice_server
    secret = _credential_changes(server)
    files = notices.wait_for(3)
    assert subjects(files) == ["Security notice: a new app password for your mailbox",
                               "Security notice: two-factor authentication turned off",
                               "Security notice: your mailbox password was changed"]
    for data in files:
        assert_no_secret(data, ALICE_PASSWORD, NEW_PASSWORD, secret)


def test_kinds_switched_off(tmp_path: Path) -> None:
    config = config_with(tmp_path / "data", new_sign_in=False, credential_changes=False)
    with running_server(config) as server:
        notices = Notices(server)
        baseline(server, notices)
        imap_login(server, "127.0.0.2")
        _credential_changes(server)
        notices.caught_up()
        assert notices.files() == []


def test_notices_are_dkim_signed(tmp_path: Path) -> None:
    config = config_with(tmp_path / "data")
    keys = DomainKeys(config.data_dir, "example.test")
    keys.generate(time.time())
    zone = {(r.name(keys.domain), "TXT"): [txt_value(r.txt)] for r in keys.public_records(keys.generations()[0])}
    with running_server(config) as server:
        notices = Notices(server)
        baseline(server, notices)
        imap_login(server, "127.0.0.2")
        [data] = notices.wait_for(1)
    assert data.startswith(b"DKIM-Signature:")
    assert b"From: Mail server security <postmaster@example.test>" in data
    results = asyncio.run(verify(data, StaticResolver(zone)))
    assert results and all(r.result == "pass" for r in results)  # every key of the domain (RSA, Ed25519)


def assert_no_secret(data: bytes, *secrets: str) -> None:
    text = message_from_bytes(data, policy=email.policy.default).get_body().get_content()  # type: ignore[union-attr]
    for secret in secrets:
        for form in (secret, base64.b64encode(secret.encode()).decode(), secret.replace(" ", "")):
            assert form.encode() not in data and form not in text


# --- the weekly digest, with an injected clock, on the real store ---------------------------------------


async def test_weekly_digest_with_an_injected_clock(tmp_path: Path) -> None:
    config = config_with(tmp_path / "data", digest_weekday=2)
    store = await open_store(config.database_url)
    try:
        await _digest_scenario(config, store)
    finally:
        await store.close()


async def _digest_scenario(config: Config, store: Store) -> None:
    await store.migrate()
    admin = AdminService(store, config.auth.argon2)
    await admin.add_domain("example.test")
    await admin.add_account(ALICE, ALICE_PASSWORD)
    done = run_cli("account", "digest", ALICE, "on", "--data-dir", str(config.data_dir), cwd=config.data_dir.parent)
    assert done.returncode == 0, done.stderr
    assert await store.security.weekly_digest_accounts() == [ALICE]
    tuesday = datetime.now(UTC) - timedelta(days=datetime.now(UTC).weekday() - 1)
    clock = FakeClock(tuesday.replace(hour=12, minute=0, second=0, microsecond=0).timestamp())
    maildir = MaildirStore(config.maildir_root, HOSTNAME)
    feed = SecurityNotices(config, store, InboxDelivery(maildir, None), clock, zone=UTC)
    assert await feed.digest_if_due() == 0  # Tuesday: the slot is Wednesday 07:00
    clock.advance(timedelta(hours=19).total_seconds())
    assert await feed.digest_if_due() == 1
    clock.advance(3600)
    assert await SecurityNotices(config, store, InboxDelivery(maildir, None), clock, zone=UTC).digest_if_due() == 0
    [digest] = notice_files(maildir.mailbox_path(ALICE))
    assert subjects([digest]) == ["Security notice: your weekly sign-in summary"]


def test_digest_command_refuses_an_unknown_account(tmp_path: Path) -> None:
    config = config_with(tmp_path / "data")
    seed_account(config, ALICE, ALICE_PASSWORD)
    base = ("--data-dir", str(config.data_dir))
    done = run_cli("account", "digest", "nobody@example.test", "on", *base, cwd=tmp_path)
    assert done.returncode == 1 and "no account nobody@example.test" in done.stderr
    done = run_cli("account", "digest", ALICE, "maybe", *base, cwd=tmp_path)
    assert done.returncode != 0 and "on or off" in done.stderr


# --- two worker processes -----------------------------------------------------------------------


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[LoggedServe, int, Config]]:
    port = free_loopback_port()
    raw: dict[str, Any] = {
        "server": {"hostname": HOSTNAME, "data_dir": str(tmp_path / "data"), "workers": 2},
        "listen": {**EPHEMERAL_LISTEN, "submission": [f"127.0.0.1:{port}"]},
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "logging": {"format": "json"},
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
        "queue": {"run_delivery": False},
        "notices": {"poll_interval": 0.05},
    }
    config_path = tmp_path / "hardmail.toml"
    config_path.write_text(tomli_w.dumps(raw))
    config = Config.model_validate(raw)
    seed_account(config, ALICE, ALICE_PASSWORD)
    running = LoggedServe(config_path, WAIT)
    try:
        running.wait_for("server.workers")
        for _worker in range(2):
            running.wait_for("server.start")
        yield running, port, config
    finally:
        running.stop()


def _feed_position(config: Config) -> tuple[int, int]:
    async def read() -> tuple[int, int]:
        store = await open_store(config.database_url)
        try:
            return int(await store.get_setting(CURSOR_KEY) or 0), await store.security.latest_login_event_id()
        finally:
            await store.close()

    return asyncio.run(read())


def test_two_workers_send_exactly_one_notice(two_workers: tuple[LoggedServe, int, Config]) -> None:
    _running, port, config = two_workers
    smtp_login("127.0.0.1", port, BASELINE)  # the baseline: no notice
    for _attempt in range(8):  # connections go to either worker
        smtp_login("127.0.0.1", port, "127.0.0.6")
    done = run_cli("account", "passwd", ALICE, "--password-stdin", "--data-dir", str(config.data_dir),
                   cwd=config.data_dir.parent, stdin=NEW_PASSWORD + "\n", env=cli_env())
    assert done.returncode == 0, done.stderr
    inbox = MaildirStore(config.maildir_root, HOSTNAME).mailbox_path(ALICE)
    wait_until(lambda: len(notice_files(inbox)) >= 2, "two notices")
    wait_until(lambda: (lambda at: at[0] >= at[1])(_feed_position(config)), "the feed at the newest event")
    assert sorted(subjects(notice_files(inbox))) == [SIGN_IN, "Security notice: your mailbox password was changed"]
