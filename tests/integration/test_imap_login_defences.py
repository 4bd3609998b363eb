"""The SMTP login defences hold on IMAP, from the same code: TOTP and app-password scopes, bans
shared between protocols (refused before any hash is computed, IMAP failures counting), IP
ranges without the imap flag refused at connect, the login history, and sessions ended when the
account changes. Real sockets, real clients (imaplib, smtplib, raw lines)."""

from __future__ import annotations

import base64
import imaplib
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.admin.access_service import AccessService, RangeSpec
from hardmail.admin.credentials import CredentialService
from hardmail.auth import totp
from hardmail.auth.hashing import BoundHasher
from hardmail.auth.pool import CountingHasher, HashPool
from support.imap import RawImap
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

FAILED = b"NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
REFUSED = b"refused at connect"
HARDMAIL = str(Path(sys.executable).parent / "hardmail")


_HASHERS: dict[int, CountingHasher] = {}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as live:
        assert live.server is not None
        hasher = CountingHasher(BoundHasher(live.config.auth.argon2))
        live.server.context.hash_pool = HashPool(live.config.auth.argon2, hashing=hasher)
        _HASHERS[id(live)] = hasher
        yield live
        _HASHERS.pop(id(live), None)


def _hashes(server: ServerThread) -> int:
    return _HASHERS[id(server)].calls


def _credentials(server: ServerThread) -> CredentialService:
    assert server.server is not None
    return CredentialService(server.server.context.store, server.config.data_dir)


def _login(server: ServerThread, user: str, password: str, source: str = "127.0.0.1") -> bytes:
    """The tagged answer to LOGIN over IMAPS from ``source``."""
    try:
        client = RawImap(server.address("imaps"), tls=True, source=source)
    except (ssl.SSLError, ConnectionError):
        return REFUSED  # refused at connect, before TLS (as submissions does)
    try:
        greeting = client.line()
        if greeting.startswith(b"* BYE"):
            return greeting
        return client.command(f'LOGIN "{user}" "{password}"')[1]
    except (ssl.SSLError, ConnectionError):
        return REFUSED
    finally:
        client.close()


def test_totp_account_takes_only_an_imap_app_password(server: ServerThread) -> None:
    service = _credentials(server)
    enrolment = server.run(service.begin_two_factor(ALICE))
    assert server.server is not None
    code = totp.code_at(enrolment.secret, totp.time_step(server.server.context.clock.now()))
    server.run(service.confirm_two_factor(enrolment, code))
    _, imap_secret = server.run(service.add_app_password(ALICE, "phone", ["imap"]))
    _, smtp_secret = server.run(service.add_app_password(ALICE, "printer", ["smtp"]))
    assert _login(server, ALICE, ALICE_PASSWORD) == b"t1 " + FAILED  # the main password: refused alike
    assert _login(server, ALICE, smtp_secret) == b"t1 " + FAILED  # out of scope: like a wrong password
    assert _login(server, ALICE, "not the password at all") == b"t1 " + FAILED
    assert _login(server, ALICE, imap_secret).startswith(b"t1 OK [CAPABILITY ")
    history = server.run(service.login_history(ALICE))
    logins = [event for event in history if event.kind == "login"]
    assert {event.protocol for event in logins} == {"imap"}
    assert {event.mechanism for event in logins} == {"LOGIN"}
    assert {event.tls_version for event in logins} <= {"TLSv1.2", "TLSv1.3"}
    assert sorted(event.result for event in logins).count("success") == 1


def test_source_banned_after_smtp_failures_is_refused_on_imap_before_hashing(server: ServerThread) -> None:
    host, port = server.address("submission")
    for n in range(5):
        client = smtplib.SMTP(host, port, timeout=30, source_address=("127.0.0.5", 0))
        client.starttls(context=client_tls_context())
        client.ehlo("attacker.example")
        plain = base64.b64encode(f"\0{ALICE}\0guess {n}".encode()).decode()
        client.docmd("AUTH", "PLAIN " + plain)
        client.close()
    spent = _hashes(server)
    answer = _login(server, ALICE, ALICE_PASSWORD, source="127.0.0.5")
    assert answer in (REFUSED, b"t1 " + FAILED)  # never a hint of a ban, never logged in
    assert _hashes(server) == spent
    assert _login(server, ALICE, ALICE_PASSWORD, source="127.0.0.6").startswith(b"t1 OK")


def test_imap_failures_count_toward_a_ban(server: ServerThread) -> None:
    answers = [_login(server, BOB, f"guess {n}", source="127.0.0.8") for n in range(6)]
    assert answers[0] == b"t1 " + FAILED
    assert answers[-1] in (REFUSED, b"t1 " + FAILED)
    spent = _hashes(server)
    assert _login(server, BOB, BOB_PASSWORD, source="127.0.0.8") in (REFUSED, b"t1 " + FAILED)
    assert _hashes(server) == spent  # banned: the right password costs no hash and does not log in
    host, port = server.address("submission")  # and SMTP refuses the source too
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(host, port, timeout=30, source_address=("127.0.0.8", 0))
    assert refused.value.smtp_code == 421


def test_range_without_imap_is_refused_at_connect(server: ServerThread) -> None:
    assert server.server is not None
    access = AccessService(server.server.context.store, server.config)
    server.run(access.add_range(RangeSpec("mail-only", "127.0.0.30", priority=50, protocols="smtp,submission")))
    hook = server.server.context.hooks[0]
    hook.forget_cached_ranges()  # type: ignore[attr-defined]
    client = RawImap(server.address("imap"), source="127.0.0.30")
    try:
        assert client.line().startswith(b"* BYE [UNAVAILABLE]")
        assert client.closed_by_server()
    finally:
        client.close()
    assert _login(server, ALICE, ALICE_PASSWORD, source="127.0.0.31").startswith(b"t1 OK")


def test_disabling_the_account_ends_an_idle_imap_session(server: ServerThread) -> None:
    client = RawImap(server.address("imaps"), tls=True)
    try:
        client.line()
        assert client.login().startswith(b"t1 OK")
        client.command("SELECT INBOX")
        client.send(b"i IDLE\r\n")
        assert client.line().startswith(b"+ ")
        data_dir = server.config.data_dir
        done = subprocess.run([HARDMAIL, "account", "disable", ALICE, "--data-dir", str(data_dir)],
                              capture_output=True, text=True, timeout=120, check=False, cwd=data_dir.parent)
        assert done.returncode == 0, done.stderr
        line = client.line()
        while not line.startswith(b"* BYE"):
            line = client.line()
        assert line == b"* BYE Your session has ended; please sign in again\r\n"
        assert client.closed_by_server()
    finally:
        client.close()
    assert _login(server, ALICE, ALICE_PASSWORD) == b"t1 " + FAILED


def test_imaplib_error_text_is_the_same_for_unknown_and_wrong(server: ServerThread) -> None:
    host, port = server.address("imaps")
    texts = []
    for user in (ALICE, "nobody@example.test"):
        client = imaplib.IMAP4_SSL(host, port, ssl_context=client_tls_context(), timeout=20)
        with pytest.raises(imaplib.IMAP4.error) as failed:
            client.login(user, "wrong wrong wrong")
        texts.append(str(failed.value))
        client.shutdown()
    assert texts[0] == texts[1]
