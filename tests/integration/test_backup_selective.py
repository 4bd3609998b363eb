"""Selective restore into a running ``hardmail serve`` (its own process, IMAP over TLS on loopback):
messages delivered and APPENDed, archived, expunged live, then restored from the test process
while the server runs; a real IMAP client (imaplib) sees them back byte for byte with their flags
and without duplicates, in place and under ``--as-folder``. A domain restored into another running
server that does not host it: its password, app-password and TOTP logins work there."""

from __future__ import annotations

import asyncio
import imaplib
import re
import smtplib
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyotp
import pytest

from hardmail.admin.credentials import CredentialService
from hardmail.admin.service import AdminService
from hardmail.config.schema import Config
from hardmail.ops.backup.selective import restore_selective
from hardmail.store import open_store
from support.cli_process import free_loopback_port
from support.dns_server import LoopbackDnsServer
from support.hardmail_imap import HardmailServer, running_hardmail
from support.selective_archive import write_archive

ALICE, PASSWORD = "alice@example.test", "correct horse battery staple"
RESTORED = "restored.test"
CAROL, CAROL_PASSWORD = f"carol@{RESTORED}", "violet tangerine umbrella 31"
DAVE, DAVE_PASSWORD = f"dave@{RESTORED}", "quiet harbour lantern 58"
_FETCHED = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")


@pytest.fixture
def dns() -> Iterator[LoopbackDnsServer]:
    with LoopbackDnsServer({}) as server:  # no query of the server leaves the machine
        yield server


def _settings(dns: LoopbackDnsServer, smtp_port: int) -> dict[str, dict[str, Any]]:
    return {"dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 5.0},
            "listen": {"smtp": [f"127.0.0.1:{smtp_port}"]}}


def _config(server: HardmailServer) -> Config:
    return Config.model_validate(tomllib.loads((server.root / "hardmail.toml").read_text()))


@contextmanager
def _imap(server: HardmailServer, user: str, password: str) -> Iterator[imaplib.IMAP4_SSL]:
    client = imaplib.IMAP4_SSL(server.host, server.imaps, ssl_context=server.client_context(), timeout=60)
    try:
        client.login(user, password)
        yield client
    finally:
        client.logout()


def _folder(client: imaplib.IMAP4_SSL, name: str) -> dict[bytes, tuple[int, frozenset[str]]]:
    """Every message of ``name`` (body → UID, flags), read with SELECT and UID FETCH."""
    status, _ = client.select(f'"{name}"')
    assert status == "OK", name
    status, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert status == "OK"
    found = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        match = _FETCHED.search(item[0])
        assert match is not None, item[0]
        flags = frozenset(flag for flag in match.group(2).decode().split() if flag != "\\Recent")
        assert item[1] not in found, "a message is there twice"
        found[item[1]] = (int(match.group(1)), flags)
    return found


def _message(n: int) -> bytes:
    return f"From: bob@example.test\r\nTo: {ALICE}\r\nSubject: note {n}\r\n\r\nline {n}\r\n".encode()


def _deliver(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail("bob@elsewhere.test", [ALICE], _message(n))


def _expunge(client: imaplib.IMAP4_SSL, folder: str, uids: list[int]) -> None:
    client.select(f'"{folder}"')
    client.uid("STORE", ",".join(map(str, uids)), "+FLAGS.SILENT", "(\\Deleted)")
    assert client.expunge()[0] == "OK"


def test_expunged_mail_comes_back_into_the_running_server(tmp_path: Path, dns: LoopbackDnsServer) -> None:
    smtp_port = free_loopback_port()
    with running_hardmail(tmp_path / "one", {ALICE: PASSWORD}, _settings(dns, smtp_port)) as server:
        for n in range(3):
            _deliver(smtp_port, n)
        with _imap(server, ALICE, PASSWORD) as client:
            client.create("Work")
            for n in range(3, 7):
                client.append("INBOX", "(\\Seen $Important)" if n % 2 else "(\\Flagged)", None, _message(n))
            client.append("Work", "(\\Answered)", None, _message(7))
            before, work = _folder(client, "INBOX"), _folder(client, "Work")
            archive, _ = write_archive(server.root / "data", tmp_path / "backups")
            doomed = sorted(uid for uid, _ in before.values())[1:4]
            _expunge(client, "INBOX", doomed)
            assert len(_folder(client, "INBOX")) == len(before) - 3

        report = asyncio.run(restore_selective(_config(server), archive, "mailbox", ALICE))

        with _imap(server, ALICE, PASSWORD) as client:
            after = _folder(client, "INBOX")
            assert {body: flags for body, (_, flags) in after.items()} == {
                body: flags for body, (_, flags) in before.items()}
            assert all(after[body][0] == uid for body, (uid, _) in before.items() if uid not in doomed)
            assert all(after[body][0] > max(doomed) for body, (uid, _) in before.items() if uid in doomed)
            assert _folder(client, "Work") == work
        assert (report.messages_added, report.messages_present) == (3, len(before) - 3 + len(work))

        asyncio.run(restore_selective(_config(server), archive, "mailbox", ALICE, as_folder="Restored"))
        with _imap(server, ALICE, PASSWORD) as client:
            status, listed = client.list('""', "Restored/*")
            assert status == "OK" and any(b'"Restored/INBOX"' in line or b"Restored/INBOX" in line
                                          for line in listed if isinstance(line, bytes))
            copied = _folder(client, "Restored/INBOX")
            assert {body: flags for body, (_, flags) in copied.items()} == {
                body: flags for body, (_, flags) in before.items()}
            assert set(_folder(client, "Restored/Work")) == set(work)
            assert len(_folder(client, "INBOX")) == len(before)  # the live INBOX is as it was


async def _second_domain(config: Config) -> str:
    """restored.test on the first server: carol with 2FA and an app password, dave with mail."""
    store = await open_store(config.database_url)
    try:
        admin = AdminService(store, config.auth.argon2)
        await admin.add_domain(RESTORED)
        await admin.add_account(CAROL, CAROL_PASSWORD)
        await admin.add_account(DAVE, DAVE_PASSWORD)
        await admin.add_alias(f"team@{RESTORED}", [CAROL, DAVE])
        credentials = CredentialService(store, config.data_dir)
        enrolment = await credentials.begin_two_factor(CAROL)
        await credentials.confirm_two_factor(enrolment, pyotp.TOTP(enrolment.secret).now())
        _, app_password = await credentials.add_app_password(CAROL, "laptop", ["imap"])
    finally:
        await store.close()
    return f"{enrolment.secret}\n{app_password}"


async def _verify_totp(config: Config, secret: str) -> str:
    store = await open_store(config.database_url)
    try:
        later = pyotp.TOTP(secret).at(time.time() + 30)  # the enrolment's step is spent, and stays spent
        return await CredentialService(store, config.data_dir).verify_second_factor(CAROL, later)
    finally:
        await store.close()


def test_a_domain_restored_into_a_server_without_it(tmp_path: Path, dns: LoopbackDnsServer) -> None:
    with running_hardmail(tmp_path / "one", {ALICE: PASSWORD}, _settings(dns, free_loopback_port())) as first:
        secret, app_password = asyncio.run(_second_domain(_config(first))).split("\n")
        with _imap(first, DAVE, DAVE_PASSWORD) as client:
            client.append("INBOX", "(\\Seen)", None, _message(1))
            dave_inbox = _folder(client, "INBOX")
            validity = client.response("UIDVALIDITY")
            assert validity[1][0]
        archive, _ = write_archive(first.root / "data", tmp_path / "backups")

    with running_hardmail(tmp_path / "two", {}, _settings(dns, free_loopback_port())) as second:
        report = asyncio.run(restore_selective(_config(second), archive, "domain", RESTORED))
        assert report.added["account"] == 2 and report.added["alias"] == 1

        with _imap(second, DAVE, DAVE_PASSWORD) as client:  # an account the restore made: UIDs as they were
            assert _folder(client, "INBOX") == dave_inbox
            assert client.response("UIDVALIDITY") == validity
        with _imap(second, CAROL, app_password) as client:
            assert client.select("INBOX")[0] == "OK"
        refused = imaplib.IMAP4_SSL(second.host, second.imaps, ssl_context=second.client_context(), timeout=60)
        try:
            with pytest.raises(imaplib.IMAP4.error):  # two-factor: the main password alone is refused
                refused.login(CAROL, CAROL_PASSWORD)
        finally:
            refused.shutdown()
        assert asyncio.run(_verify_totp(_config(second), secret)) == "totp"
