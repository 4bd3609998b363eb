"""The security-notice feed on a real SQLite store with the in-memory security store: which login
history rows make a notice, the cursor, retries, and the weekly digest with a fake clock."""

from __future__ import annotations

import email.policy
import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from hardmail.admin.service import AdminService
from hardmail.config.schema import Config, PasswordHashSection
from hardmail.core.clock import FakeClock
from hardmail.server.security_notices import (
    CURSOR_KEY,
    DIGEST_WEEK_KEY,
    SecurityNotices,
    digest_slot,
    in_known_network,
    network_of,
    week_key,
)
from hardmail.store import open_store
from hardmail.store.ports_credentials import LoginEvent
from support.memory_security import MemorySecurity, WithSecurity

ALICE = "alice@example.org"
BOB = "bob@example.org"
# Monday 2024-01-08 06:00 UTC
MONDAY_6 = datetime(2024, 1, 8, 6, 0, tzinfo=UTC).timestamp()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.fail = False

    async def __call__(self, account: str, message: bytes) -> None:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.messages.append((account, message))

    def subjects(self, account: str = ALICE) -> list[str]:
        mine = [m for a, m in self.messages if a == account]
        return [str(message_from_bytes(m, policy=email.policy.default)["Subject"]) for m in mine]


class Harness:
    def __init__(self, store: Any, security: MemorySecurity, clock: FakeClock, tmp_path: Path) -> None:
        self.store = store
        self.security = security
        self.clock = clock
        self.inbox = Inbox()
        self.tmp_path = tmp_path

    def feed(self, **notices: Any) -> SecurityNotices:
        config = Config.model_validate({"server": {"data_dir": str(self.tmp_path / "data"),
                                                   "hostname": "mail.example.org"},
                                        "notices": {"first_sign_in": True, **notices}})
        return SecurityNotices(config, self.store, self.inbox, self.clock, zone=UTC)

    def login(self, ip: str, account: str = ALICE, result: str = "success", **fields: Any) -> int:
        at = datetime.fromtimestamp(self.clock.now(), UTC)
        return self.security.append(LoginEvent(at, account, "login", result, fields.get("protocol", "imap"),
                                               "PLAIN", ip, "TLSv1.3", fields.get("detail", "password")))

    def credential(self, kind: str, account: str = ALICE, detail: str = "") -> int:
        at = datetime.fromtimestamp(self.clock.now(), UTC)
        return self.security.append(LoginEvent(at, account, kind, "done", "admin", detail=detail))


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock(MONDAY_6)
    inner = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}", clock=clock)
    await inner.migrate()
    admin = AdminService(inner, PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1), clock=clock)
    await admin.add_domain("example.org")
    await admin.add_account(ALICE, "correct horse battery staple")
    await admin.add_account(BOB, "another long passphrase 42")
    security = MemorySecurity(accounts={ALICE, BOB})
    store = WithSecurity(inner, security)
    await store.set_setting(CURSOR_KEY, "0")  # as the migration seeds it on a new database
    try:
        yield Harness(store, security, clock, tmp_path)
    finally:
        await inner.close()


def test_networks() -> None:
    assert network_of("192.0.2.77", 24, 48) == ipaddress.ip_network("192.0.2.0/24")
    assert network_of("::ffff:192.0.2.77", 32, 48) == ipaddress.ip_network("192.0.2.77/32")
    assert network_of("2001:db8:1:2::5", 32, 48) == ipaddress.ip_network("2001:db8:1::/48")
    assert network_of("not an address", 24, 48) is None
    net = network_of("192.0.2.77", 24, 48)
    assert in_known_network(net, "192.0.2.77", ["192.0.2.1"], 24, 48)
    assert not in_known_network(net, "192.0.2.77", ["192.0.3.1", "2001:db8::1"], 24, 48)
    assert not in_known_network(network_of("192.0.2.77", 32, 48), "192.0.2.77", ["192.0.2.1"], 32, 48)


def test_digest_slot_and_week() -> None:
    wednesday = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
    assert digest_slot(wednesday, 0) == datetime(2024, 1, 8, 7, 0, tzinfo=UTC)
    assert digest_slot(wednesday, 6) == datetime(2024, 1, 14, 7, 0, tzinfo=UTC)
    assert week_key(wednesday) == "2024-W02"


async def test_new_source_gives_exactly_one_notice(harness: Harness) -> None:
    feed = harness.feed()
    harness.login("127.0.0.2")
    assert await feed.poll_once() == 1
    harness.login("127.0.0.2")
    harness.login("127.0.0.2", protocol="smtp")
    assert await feed.poll_once() == 0
    harness.login("127.0.0.3")
    assert await feed.poll_once() == 1
    assert harness.inbox.subjects() == ["Security notice: new sign-in to your mailbox"] * 2
    assert await harness.store.get_setting(CURSOR_KEY) == "4"


async def test_the_first_sign_in_sets_the_baseline_by_default(harness: Harness) -> None:
    feed = harness.feed(first_sign_in=False)
    harness.login("127.0.0.2")
    assert await feed.poll_once() == 0  # nothing to be new against: recorded, no notice
    harness.login("127.0.0.2")
    assert await feed.poll_once() == 0
    harness.login("127.0.0.3")
    assert await feed.poll_once() == 1
    assert harness.inbox.subjects() == ["Security notice: new sign-in to your mailbox"]


async def test_two_new_sign_ins_in_one_batch(harness: Harness) -> None:
    harness.login("127.0.0.2")
    harness.login("127.0.0.2")
    harness.login("127.0.0.2", account=BOB)
    assert await harness.feed().poll_once() == 2
    assert [a for a, _m in harness.inbox.messages] == [ALICE, BOB]


async def test_known_network_gives_none(harness: Harness) -> None:
    feed = harness.feed(ipv4_prefix=24)
    harness.login("127.0.0.2")
    harness.login("127.0.0.9")  # same /24, same batch
    assert await feed.poll_once() == 1
    harness.login("127.0.0.10")
    harness.login("127.0.1.10")
    assert await feed.poll_once() == 1
    assert set(await harness.security.sign_in_sources(ALICE)) == {"127.0.0.2", "127.0.0.9", "127.0.0.10",
                                                                  "127.0.1.10"}


async def test_failures_make_no_notice(harness: Harness) -> None:
    harness.login("127.0.0.2", result="failure")
    harness.login("127.0.0.2", result="refused")
    assert await harness.feed(refused_sign_in=False).poll_once() == 0
    assert await harness.security.sign_in_sources(ALICE) == []


async def test_credential_changes(harness: Harness) -> None:
    for kind in ("app-password-created", "2fa-disabled", "password-changed", "password-set", "2fa-enabled",
                 "app-password-revoked"):
        harness.credential(kind, detail="'phone' for imap,smtp" if kind == "app-password-created" else "")
    assert await harness.feed().poll_once() == 3
    assert harness.inbox.subjects() == [
        "Security notice: a new app password for your mailbox",
        "Security notice: two-factor authentication turned off",
        "Security notice: your mailbox password was changed"]


async def test_kinds_switched_off(harness: Harness) -> None:
    harness.login("127.0.0.2")
    harness.credential("password-changed")
    assert await harness.feed(new_sign_in=False, credential_changes=False).poll_once() == 0
    assert await harness.security.sign_in_sources(ALICE) == ["127.0.0.2"]  # still recorded: no flood later
    harness.login("127.0.0.3")
    harness.credential("password-changed")
    assert await harness.feed(enabled=False).poll_once() == 0
    harness.login("127.0.0.3")
    assert await harness.feed().poll_once() == 0  # turned on again: the old events are not sent
    assert harness.inbox.messages == []


async def test_failed_delivery_is_tried_again(harness: Harness) -> None:
    feed = harness.feed()
    harness.login("127.0.0.2")
    assert await feed.poll_once() == 1
    harness.login("127.0.0.2")  # known: no notice
    harness.login("127.0.0.3")  # new, but the delivery fails
    harness.credential("2fa-disabled")
    harness.inbox.fail = True
    assert await feed.poll_once() == 0
    assert await harness.store.get_setting(CURSOR_KEY) == "2"  # up to the event before the failure
    harness.inbox.fail = False
    assert await feed.poll_once() == 2  # the source not recorded before its notice is delivered
    assert await harness.store.get_setting(CURSOR_KEY) == "4"
    assert await feed.poll_once() == 0
    assert len(harness.inbox.messages) == 3


async def test_a_restart_after_a_failed_delivery_still_notifies(harness: Harness) -> None:
    harness.login("127.0.0.2")
    assert await harness.feed().poll_once() == 1
    harness.login("127.0.0.3")  # new, but the disk is full
    harness.inbox.fail = True
    assert await harness.feed().poll_once() == 0
    harness.inbox.fail = False
    assert await harness.feed().poll_once() == 1  # a new process (the admin restarted the server)
    assert harness.inbox.subjects() == ["Security notice: new sign-in to your mailbox"] * 2


async def test_a_correct_password_refused_gets_its_own_notice(harness: Harness) -> None:
    feed = harness.feed()
    harness.login("127.0.0.2", result="refused", detail="two-factor authentication is on")
    assert await feed.poll_once() == 1
    [(_, message)] = harness.inbox.messages
    text = message_from_bytes(message, policy=email.policy.default).get_body().get_content()  # type: ignore[union-attr]
    assert "with its correct password" in text and "127.0.0.2" in text
    assert harness.inbox.subjects() == ["Security notice: your password was used, the sign-in was refused"]
    harness.login("127.0.0.2", result="refused")
    assert await harness.feed(refused_sign_in=False).poll_once() == 0


async def test_a_dormant_accounts_first_sign_in_is_notified(harness: Harness) -> None:
    harness.clock.advance(30 * 86400)  # the accounts were made a month ago and never used
    harness.login("127.0.0.2")
    assert await harness.feed(first_sign_in=False).poll_once() == 1


async def test_cursor_is_followed(harness: Harness) -> None:
    harness.login("127.0.0.2")
    harness.credential("password-changed")
    await harness.store.set_setting(CURSOR_KEY, "2")  # as the migration sets it on a server with history
    feed = harness.feed()
    assert await feed.poll_once() == 0
    harness.login("127.0.0.3")
    assert await feed.poll_once() == 1
    assert await harness.store.get_setting(CURSOR_KEY) == "3"


async def test_no_cursor_means_the_start(harness: Harness) -> None:
    harness.credential("password-changed")  # e.g. made with the CLI before the first start
    await harness.store.set_setting(CURSOR_KEY, "")
    assert await harness.feed().poll_once() == 1


async def test_removed_account_is_skipped(harness: Harness) -> None:
    harness.login("127.0.0.2", account="gone@example.org")
    assert await harness.feed().poll_once() == 0
    assert await harness.store.get_setting(CURSOR_KEY) == "1"


async def test_weekly_digest_once_a_week(harness: Harness) -> None:
    await harness.security.set_weekly_digest(ALICE, True)
    harness.login("127.0.0.2")
    harness.login("127.0.0.2")
    harness.login("127.0.0.7", result="failure")
    feed = harness.feed(new_sign_in=False)
    assert await feed.digest_if_due() == 0  # Monday 06:00: before the slot
    harness.clock.advance(3600)
    assert await feed.digest_if_due() == 1
    assert await feed.digest_if_due() == 0
    assert await harness.feed().digest_if_due() == 0  # a restart: the week is remembered
    assert await harness.store.get_setting(DIGEST_WEEK_KEY) == "2024-W02"
    harness.clock.advance(timedelta(days=7).total_seconds())
    assert await harness.feed().digest_if_due() == 1
    payload = message_from_bytes(harness.inbox.messages[0][1]).get_payload(decode=True)
    assert isinstance(payload, bytes)
    first = payload.decode()
    assert "Sign-ins: 2" in first and "127.0.0.2: 2 times over IMAP" in first
    assert "Failed sign-in attempts against your account: 1" in first and "127.0.0.7: once" in first
    assert harness.inbox.subjects(BOB) == []


async def test_weekly_digest_off(harness: Harness) -> None:
    await harness.security.set_weekly_digest(ALICE, True)
    harness.clock.advance(3600)
    assert await harness.feed(weekly_digest=False).poll_once() == 0
    assert await harness.feed(enabled=False).digest_if_due() == 0
    assert harness.inbox.messages == []
