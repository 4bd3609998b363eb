"""POP3 logins share SMTP's login engine: bans across protocols (refused before any hashing),
POP3 failures counting toward them, two-factor accounts and app-password scopes, and the login
history row with protocol "pop3".
"""

from __future__ import annotations

import base64
import poplib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scramp import ScramClient

from hardmail.admin.access_service import AccessService, RangeSpec
from hardmail.admin.credentials import CredentialService
from hardmail.auth import totp
from hardmail.auth.hashing import BoundHasher
from hardmail.auth.pool import CountingHasher, HashPool
from hardmail.core.clock import FakeClock
from hardmail.server.access_hook import AccessHook, access_hook_of
from support.live import ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD, ServerThread, client_tls_context
from support.pop3 import pop3_server, pop3s_login


class SourcePop3(poplib.POP3_SSL):
    """POP3_SSL from a chosen loopback source address (poplib has no source_address)."""

    def __init__(self, address: tuple[str, int], source: str) -> None:
        self.source = source
        super().__init__(*address, context=client_tls_context(), timeout=30)

    def _create_socket(self, timeout: Any) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return client_tls_context().wrap_socket(sock, server_hostname=self.host)


class Recorded:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[ServerThread, AccessHook, CountingHasher]]:
    with pop3_server(tmp_path / "data", messages=1) as server:
        assert server.server is not None
        context = server.server.context
        hasher = CountingHasher(BoundHasher(server.config.auth.argon2))
        context.hash_pool = HashPool(server.config.auth.argon2, hashing=hasher)
        hook = access_hook_of(context)
        assert hook is not None
        hook.clock, hook.sleeper = FakeClock(start=time.time()), Recorded()
        yield server, hook, hasher


def _pop3_login(server: ServerThread, source: str, user: str, password: str) -> bytes:
    """The answer to PASS; b"closed" when the connection was refused (on pop3s, before TLS)."""
    try:
        client = SourcePop3(server.address("pop3s"), source)
    except (ssl.SSLError, ConnectionError):
        return b"closed"
    try:
        client.user(user)
        return client.pass_(password)
    except poplib.error_proto as failed:
        return bytes(failed.args[0])
    finally:
        client.close()


def _greeting(server: ServerThread, source: str) -> bytes:
    """The greeting of the pop3 (STLS) listener to ``source``."""
    with socket.create_connection(server.address("pop3"), 30, source_address=(source, 0)) as sock:
        return sock.makefile("rb").readline()


def _smtp_auth(server: ServerThread, source: str, user: str, password: str) -> int:
    client = smtplib.SMTP(*server.address("submission"), timeout=30, source_address=(source, 0))
    client.starttls(context=client_tls_context())
    client.ehlo("attacker.example")
    code, _ = client.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode())
    client.close()
    return code


def test_smtp_failures_ban_the_source_on_pop3_before_any_hashing(
        guarded: tuple[ServerThread, AccessHook, CountingHasher]) -> None:
    server, _, hasher = guarded
    codes = [_smtp_auth(server, "127.0.0.5", ALICE, f"guess {n}") for n in range(5)]
    assert codes[-1] == 421
    spent = hasher.calls
    assert _pop3_login(server, "127.0.0.5", ALICE, ALICE_PASSWORD) == b"closed"
    assert _greeting(server, "127.0.0.5").startswith(b"-ERR [SYS/TEMP] Too many failed logins")
    assert hasher.calls == spent
    assert _pop3_login(server, "127.0.0.6", ALICE, ALICE_PASSWORD).startswith(b"+OK")


def test_pop3_failures_count_toward_the_ban_on_smtp(guarded: tuple[ServerThread, AccessHook, CountingHasher]) -> None:
    server, _, hasher = guarded
    answers = [_pop3_login(server, "127.0.0.7", ALICE, f"guess {n}") for n in range(5)]
    assert answers[:4] == [b"-ERR [AUTH] Authentication failed."] * 4
    assert answers[4] == b"-ERR [SYS/TEMP] Too many failed logins from your address; try again later."
    spent = hasher.calls
    with pytest.raises(smtplib.SMTPConnectError):
        _smtp_auth(server, "127.0.0.7", ALICE, ALICE_PASSWORD)
    assert _pop3_login(server, "127.0.0.7", ALICE, ALICE_PASSWORD) == b"closed"
    assert hasher.calls == spent


@pytest.fixture
def live(tmp_path: Path) -> Iterator[ServerThread]:
    with pop3_server(tmp_path / "data", messages=1) as server:
        yield server


def _credentials(server: ServerThread) -> CredentialService:
    assert server.server is not None
    return CredentialService(server.server.context.store, server.config.data_dir)


def _login(server: ServerThread, user: str, password: str) -> bytes:
    return _pop3_login(server, "127.0.0.1", user, password)


def test_two_factor_account_takes_only_a_pop3_scoped_app_password(live: ServerThread) -> None:
    service = _credentials(live)
    enrolment = live.run(service.begin_two_factor(ALICE))
    code = totp.code_at(enrolment.secret, totp.time_step(live.server.context.clock.now()))  # type: ignore[union-attr]
    live.run(service.confirm_two_factor(enrolment, code))
    _record, smtp_only = live.run(service.add_app_password(ALICE, "phone", ["smtp"]))
    _record, pop3 = live.run(service.add_app_password(ALICE, "fetchmail", ["pop3"]))
    failed = b"-ERR [AUTH] Authentication failed."
    assert _login(live, ALICE, ALICE_PASSWORD) == failed  # the main password, like a wrong one
    assert _login(live, ALICE, smtp_only) == failed
    assert _login(live, ALICE, pop3).startswith(b"+OK Logged in")


def test_an_imap_only_app_password_fails_on_pop3(live: ServerThread) -> None:
    _record, imap_only = live.run(_credentials(live).add_app_password(BOB, "reader", ["imap"]))
    assert _login(live, BOB, imap_only) == b"-ERR [AUTH] Authentication failed."
    assert _login(live, BOB, BOB_PASSWORD).startswith(b"+OK Logged in")


def test_login_history_rows_have_protocol_pop3(live: ServerThread) -> None:
    _login(live, ALICE, "not the password")
    _login(live, ALICE, ALICE_PASSWORD)
    rows = [e for e in live.run(_credentials(live).login_history(ALICE)) if e.kind == "login"]
    assert [(e.protocol, e.mechanism, e.result) for e in rows[:2]] in (
        [("pop3", "USER", "success"), ("pop3", "USER", "failure")],
        [("pop3", "USER", "failure"), ("pop3", "USER", "success")])
    assert all(e.tls_version.startswith("TLS") for e in rows[:2])


def _auth_scram(client: poplib.POP3_SSL, user: str, password: str) -> bytes:
    scram = ScramClient(["SCRAM-SHA-256"], user, password)
    first = base64.b64encode(scram.get_client_first().encode()).decode()
    server_first = client._shortcmd(f"AUTH SCRAM-SHA-256 {first}")
    scram.set_server_first(base64.b64decode(server_first[2:]).decode())
    final = client._shortcmd(base64.b64encode(scram.get_client_final().encode()).decode())
    scram.set_server_final(base64.b64decode(final[2:]).decode())  # the server proved it knows the secrets
    return client._shortcmd("")


def test_scram_sha_256_over_pop3(live: ServerThread) -> None:
    client = poplib.POP3_SSL(*live.address("pop3s"), context=client_tls_context(), timeout=30)
    assert "SCRAM-SHA-256" in client.capa()["SASL"]
    assert _auth_scram(client, BOB, BOB_PASSWORD).startswith(b"+OK Logged in")
    assert client.stat() == (0, 0)
    client.quit()
    client = poplib.POP3_SSL(*live.address("pop3s"), context=client_tls_context(), timeout=30)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] Authentication failed\."):
        _auth_scram(client, BOB, "not bob's password at all")
    client.quit()
    rows = live.run(live.server.context.store.credentials.list_login_events(BOB))  # type: ignore[union-attr]
    assert [(e.protocol, e.mechanism, e.result) for e in rows[:2]] == [
        ("pop3", "SCRAM-SHA-256", "failure"), ("pop3", "SCRAM-SHA-256", "success")]


def test_disabling_the_account_ends_the_session_without_deleting(live: ServerThread) -> None:
    client = pop3s_login(live)
    client.dele(1)
    live.run(live.admin.set_account_enabled(ALICE, False))
    assert client.file.readline() == b"-ERR [AUTH] Your session has ended; please sign in again.\r\n"
    assert client.file.readline() == b""
    client.close()
    live.run(live.admin.set_account_enabled(ALICE, True))
    again = pop3s_login(live)
    assert again.stat()[0] == 1
    again.quit()


def test_an_ip_range_without_pop3_refuses_the_connection(
        guarded: tuple[ServerThread, AccessHook, CountingHasher]) -> None:
    server, hook, _ = guarded
    access = AccessService(server.server.context.store, server.config)  # type: ignore[union-attr]
    server.run(access.add_range(RangeSpec("no-pop3", "127.0.0.12", protocols="smtp,imap")))
    hook.forget_cached_ranges()
    assert _greeting(server, "127.0.0.12").startswith(b"-ERR [SYS/PERM]")
    assert _pop3_login(server, "127.0.0.13", ALICE, ALICE_PASSWORD).startswith(b"+OK")


def test_a_saturated_hashing_pool_is_a_temporary_failure(live: ServerThread) -> None:
    assert live.server is not None
    live.server.context.hash_pool = HashPool(live.config.auth.argon2, per_source=0)
    assert _login(live, ALICE, ALICE_PASSWORD) == b"-ERR [SYS/TEMP] Temporary authentication failure, try again later."


def test_plaintext_login_only_when_the_admin_allows_it(tmp_path: Path) -> None:
    with pop3_server(tmp_path / "data", messages=1, pop3={"allow_plaintext_login": True}) as server:
        client = poplib.POP3(*server.address("pop3"), timeout=30)
        assert "USER" in client.capa() and "STLS" in client.capa()
        client.user(ALICE)
        assert client.pass_(ALICE_PASSWORD).startswith(b"+OK Logged in")
        client.quit()
        rows = server.run(_credentials(server).login_history(ALICE))
        assert (rows[0].protocol, rows[0].result, rows[0].tls_version) == ("pop3", "success", "")
