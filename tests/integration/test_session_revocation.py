"""Open authenticated sessions end when their account is disabled, frozen, its password changed or
the app password they used revoked, by the ``hardmail`` CLI run as another process.

Each test opens a real submission session (smtplib, STARTTLS, AUTH), runs the CLI as a subprocess
on the server's data directory, and waits for the server's unprompted ``421 4.7.0``: the client's
socket timeout is only a deadline that turns a missing reply into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from scramp import ScramClient

from hardmail.admin.credentials import CredentialService
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

WAIT = 30.0
HARDMAIL = str(Path(sys.executable).parent / "hardmail")
ENDED_TEXT = b"4.7.0 Your session has ended; please sign in again"
NEW_PASSWORD = "a completely different passphrase 99"


def cli(server: ServerThread, *args: str, stdin: str | None = None) -> str:
    """``hardmail ARGS --data-dir DATA`` as a separate process, as an admin would run it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HARDMAIL_")}
    data_dir = server.config.data_dir
    done = subprocess.run([HARDMAIL, *args, "--data-dir", str(data_dir)], input=stdin, capture_output=True,
                          text=True, env=env, cwd=data_dir.parent, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextlib.contextmanager
def signed_in(server: ServerThread, user: str = ALICE, password: str = ALICE_PASSWORD) -> Iterator[smtplib.SMTP]:
    client = smtplib.SMTP(*server.address("submission"), timeout=WAIT)
    try:
        client.starttls(context=client_tls_context())
        client.ehlo()
        client.login(user, password)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()


def assert_ended(client: smtplib.SMTP) -> None:
    """The server says 421 unprompted and closes (a missing reply fails at the socket deadline)."""
    code, text = client.getreply()
    assert (code, text) == (421, ENDED_TEXT)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.getreply()


def assert_alive(client: smtplib.SMTP) -> None:
    assert client.noop()[0] == 250


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as running:
        yield running


@pytest.mark.parametrize("command", [
    ("account", "disable", ALICE),
    ("account", "freeze", ALICE, "--reason", "phished"),
    ("account", "passwd", ALICE, "--password-stdin"),
    ("account", "remove", ALICE),
    ("account", "import-hash", ALICE, "--scheme", "hmailserver2", "--hash", "5f4dcc3b5aa765d61d8327deb882cf99"),
])
def test_a_change_by_the_cli_ends_the_accounts_open_sessions(server: ServerThread, command: tuple[str, ...]) -> None:
    with signed_in(server) as alice, signed_in(server) as alice_again, signed_in(server, BOB, BOB_PASSWORD) as bob:
        cli(server, *command, stdin=NEW_PASSWORD + "\n")
        assert_ended(alice)
        assert_ended(alice_again)
        assert_alive(bob)  # another account's session goes on


def test_revoking_an_app_password_ends_only_the_sessions_that_used_it(server: ServerThread) -> None:
    phone = _app_password(server, "phone")
    laptop = _app_password(server, "laptop")
    with signed_in(server, ALICE, phone) as on_phone, signed_in(server, ALICE, laptop) as on_laptop, \
            signed_in(server) as with_password:
        cli(server, "account", "app-password", "revoke", ALICE, "phone")
        assert_ended(on_phone)
        assert_alive(on_laptop)
        assert_alive(with_password)
        cli(server, "account", "disable", ALICE)  # a change seen after the revocation: both end now
        assert_ended(on_laptop)
        assert_ended(with_password)


def _app_password(server: ServerThread, name: str) -> str:
    assert server.server is not None
    service = CredentialService(server.server.context.store, server.config.data_dir)
    _record, secret = server.run(service.add_app_password(ALICE, name, ["smtp"]))
    return secret


def test_a_session_in_the_middle_of_data_ends_and_its_message_is_not_accepted(server: ServerThread) -> None:
    with signed_in(server) as alice:
        alice.mail(ALICE)
        alice.rcpt(BOB)
        assert alice.docmd("DATA")[0] == 354
        alice.send(b"From: alice@example.test\r\nSubject: half\r\n\r\nthe first half of the body\r\n")
        cli(server, "account", "disable", ALICE)
        assert_ended(alice)
    assert server.messages(BOB) == []


def test_a_frozen_account_cannot_log_in_but_still_receives_mail(server: ServerThread) -> None:
    cli(server, "account", "freeze", ALICE, "--reason", "phished via a fake login page")
    with smtplib.SMTP(*server.address("submission"), timeout=WAIT) as client:
        client.starttls(context=client_tls_context())
        client.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as frozen:
            client.login(ALICE, ALICE_PASSWORD)
        with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
            client.login(BOB, "not the password of bob")
    assert (frozen.value.smtp_code, frozen.value.smtp_error) == (wrong.value.smtp_code, wrong.value.smtp_error)
    assert server.server is not None
    history = server.run(CredentialService(server.server.context.store, server.config.data_dir).login_history(ALICE))
    recorded = [(event.kind, event.result, event.detail) for event in history]
    assert ("login", "failure", "account frozen: phished via a fake login page") in recorded
    assert ("account-frozen", "done", "phished via a fake login page") in recorded
    [listed] = [row for row in json.loads(cli(server, "account", "list", "--json")) if row["address"] == ALICE]
    assert listed["frozen"] is True and listed["enabled"] is True
    with smtplib.SMTP(*server.address("smtp"), timeout=WAIT) as mx:
        mx.sendmail("someone@remote.example", [ALICE], b"From: someone@remote.example\r\nSubject: in\r\n\r\nhi\r\n")
    assert len(server.messages(ALICE)) == 1
    cli(server, "account", "unfreeze", ALICE)
    with signed_in(server) as alice:
        assert_alive(alice)


def test_a_message_is_refused_when_its_account_changed_before_the_next_poll(tmp_path: Path) -> None:
    """With the periodic check off, only the check made before accepting a message can see the
    change: the message gets 421, nothing is delivered."""
    config = server_config(tmp_path / "data", auth={"session_check_seconds": 0})
    with running_server(config) as server, signed_in(server) as alice:
        cli(server, "account", "disable", ALICE)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            alice.sendmail(ALICE, [BOB], b"From: alice@example.test\r\nSubject: late\r\n\r\nhi\r\n")
        assert (refused.value.smtp_code, refused.value.smtp_error) == (421, ENDED_TEXT)
        assert server.messages(BOB) == []


def test_a_new_password_ends_scram_sessions_but_not_app_password_ones(server: ServerThread) -> None:
    phone = _app_password(server, "phone")
    with signed_in(server, ALICE, phone) as on_phone, contextlib.closing(_scram_session(server)) as with_scram:
        cli(server, "account", "passwd", ALICE, "--password-stdin", stdin=NEW_PASSWORD + "\n")
        assert_ended(with_scram)
        assert_alive(on_phone)  # the app password still works: revoke it to end these too


def _scram_session(server: ServerThread) -> smtplib.SMTP:
    client = smtplib.SMTP(*server.address("submission"), timeout=WAIT)
    client.starttls(context=client_tls_context())
    client.ehlo()
    scram = ScramClient(["SCRAM-SHA-256"], ALICE, ALICE_PASSWORD)

    def answer(challenge: bytes | None = None) -> str:
        if challenge is None:
            return scram.get_client_first()
        if challenge.startswith(b"v="):
            scram.set_server_final(challenge.decode())
            return ""
        scram.set_server_first(challenge.decode())
        return scram.get_client_final()

    assert client.auth("SCRAM-SHA-256", answer)[0] == 235
    return client


def _registered(server: ServerThread) -> int:
    assert server.server is not None
    return len(server.server.context.sessions)


def _until(server: ServerThread, condition: Callable[[], bool], timeout: float = 20) -> None:
    """Wait, on the server's loop, until ``condition`` holds (a deadline, not a measured time)."""
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.01)
    server.run(wait(), timeout=timeout)


def test_a_session_whose_client_does_not_read_its_replies_is_closed_all_the_same(tmp_path: Path) -> None:
    """The client pipelines commands and never reads the replies: the session waits for it to take
    them. Disabling the account must end it there too, not when the client reads again."""
    config = server_config(tmp_path / "data", smtp={"allow_plaintext_auth": True, "max_commands": 1_000_000})
    with running_server(config) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        sock.settimeout(WAIT)
        sock.connect(server.address("submission"))
        with contextlib.closing(sock):
            token = base64.b64encode(f"\0{ALICE}\0{ALICE_PASSWORD}".encode()).decode()
            sock.sendall(f"EHLO client\r\nAUTH PLAIN {token}\r\n".encode())
            received = b""
            while b"235 " not in received:
                received += sock.recv(4096)
            session = server.server.context.sessions if server.server else None
            assert session is not None and len(session) == 1
            flood = threading.Thread(target=_send_quietly, args=(sock, b"HELP\r\n" * 200_000), daemon=True)
            flood.start()
            _until(server, lambda: _draining(server))  # the server waits for the client to read
            cli(server, "account", "disable", ALICE)
            _until(server, lambda: _registered(server) == 0)  # ended although the client reads nothing


def _draining(server: ServerThread) -> bool:
    assert server.server is not None
    sessions = list(server.server.context.sessions._by_id.values())
    return bool(sessions) and all(s.target.channel.must_drain for s in sessions)  # type: ignore[attr-defined]


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


def test_turning_totp_on_or_requiring_a_new_password_ends_the_main_password_sessions(server: ServerThread) -> None:
    """From then on the main password alone is refused for mail: its open sessions end too; the app
    passwords (what 2FA accounts use for mail) go on."""
    phone = _app_password(server, "phone")
    with signed_in(server) as with_password, signed_in(server, ALICE, phone) as on_phone:
        cli(server, "account", "must-change", ALICE)
        assert_ended(with_password)
        assert_alive(on_phone)
    cli(server, "account", "must-change", ALICE, "--clear")
    assert server.server is not None
    service = CredentialService(server.server.context.store, server.config.data_dir)
    with signed_in(server) as with_password, signed_in(server, ALICE, phone) as on_phone:
        enrolment = server.run(service.begin_two_factor(ALICE))
        code = pyotp.TOTP(enrolment.secret).now()
        server.run(service.confirm_two_factor(enrolment, code))
        assert_ended(with_password)
        assert_alive(on_phone)


def test_a_cancelled_exchange_does_not_make_a_later_login_end_for_an_earlier_change(server: ServerThread) -> None:
    """AUTH cancelled with "*", the password changed, then a login with the new one: that session
    is the new password's and must go on (send a message: the check before it sees every change)."""
    with smtplib.SMTP(*server.address("submission"), timeout=WAIT) as client:
        client.starttls(context=client_tls_context())
        client.ehlo()
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        assert client.docmd("*")[0] == 501
        cli(server, "account", "passwd", ALICE, "--password-stdin", stdin=NEW_PASSWORD + "\n")
        client.login(ALICE, NEW_PASSWORD)
        assert client.sendmail(ALICE, [BOB], b"From: alice@example.test\r\nSubject: new\r\n\r\nhi\r\n") == {}
    assert len(server.messages(BOB)) == 1


def test_a_login_again_after_starttls_leaves_no_entry_for_the_first_account(tmp_path: Path) -> None:
    """AUTH in the clear (allowed here), STARTTLS (which forgets it), AUTH as another account: a
    change of the first account must not end the session, nor keep it in memory after it ends."""
    config = server_config(tmp_path / "data", smtp={"allow_plaintext_auth": True})
    with running_server(config) as server:
        with smtplib.SMTP(*server.address("submission"), timeout=WAIT) as client:
            client.ehlo()
            client.login(ALICE, ALICE_PASSWORD)
            client.starttls(context=client_tls_context())
            client.ehlo()
            client.login(BOB, BOB_PASSWORD)
            cli(server, "account", "disable", ALICE)
            assert client.sendmail(BOB, [BOB], b"From: bob@example.test\r\nSubject: s\r\n\r\nhi\r\n") == {}
        _until(server, lambda: _registered(server) == 0)
        assert server.server is not None
        assert server.server.context.sessions._by_account == {}


def test_freezing_holds_the_outgoing_mail_the_account_had_queued(server: ServerThread) -> None:
    """A phished account's spam already queued must not leave after the freeze either."""
    with signed_in(server) as alice, signed_in(server, BOB, BOB_PASSWORD) as bob:
        alice.sendmail(ALICE, ["someone@remote.example"], b"From: alice@example.test\r\nSubject: x\r\n\r\nspam\r\n")
        bob.sendmail(BOB, ["someone@remote.example"], b"From: bob@example.test\r\nSubject: y\r\n\r\nfine\r\n")
    cli(server, "account", "freeze", ALICE, "--reason", "phished")
    held = {row["origin_account"]: row["held"] for row in json.loads(cli(server, "queue", "list", "--json"))}
    assert held == {ALICE: True, BOB: False}


def test_a_pipelined_bdat_message_after_the_change_is_refused(tmp_path: Path) -> None:
    """MAIL, RCPT and BDAT LAST in one packet, sent after the change but before any poll."""
    config = server_config(tmp_path / "data", auth={"session_check_seconds": 0})
    with running_server(config) as server, signed_in(server) as alice:
        cli(server, "account", "freeze", ALICE)
        body = b"From: alice@example.test\r\nSubject: bdat\r\n\r\nhi\r\n"
        alice.send(f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nBDAT {len(body)} LAST\r\n".encode() + body)
        replies = [alice.getreply() for _ in range(3)]
        assert [code for code, _text in replies] == [250, 250, 421]
        with pytest.raises(smtplib.SMTPServerDisconnected):
            alice.getreply()
        assert server.messages(BOB) == []


def _refusal(server: ServerThread, mechanism: str, user: str, password: str) -> tuple[int, bytes]:
    with smtplib.SMTP(*server.address("submission"), timeout=WAIT) as client:
        client.starttls(context=client_tls_context())
        client.ehlo()
        client.user, client.password = user, password
        answer = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}.get(mechanism)
        if answer is None:
            scram = ScramClient(["SCRAM-SHA-256"], user, password)

            def answer(challenge: bytes | None = None) -> str:
                if challenge is None:
                    return scram.get_client_first()
                scram.set_server_first(challenge.decode())
                return scram.get_client_final()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.auth(mechanism, answer, initial_response_ok=mechanism != "LOGIN")
        return refused.value.smtp_code, refused.value.smtp_error


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "SCRAM-SHA-256"])
def test_a_frozen_account_is_refused_on_every_mechanism_as_a_wrong_password_is(
        server: ServerThread, mechanism: str) -> None:
    phone = _app_password(server, "phone")
    wrong = _refusal(server, mechanism, ALICE, "not the password of alice")
    cli(server, "account", "freeze", ALICE, "--reason", "phished")
    assert _refusal(server, mechanism, ALICE, ALICE_PASSWORD) == wrong
    if mechanism != "SCRAM-SHA-256":  # app passwords are for PLAIN and LOGIN
        assert _refusal(server, mechanism, ALICE, phone) == wrong


def test_while_the_changes_cannot_be_read_messages_wait_and_the_poll_goes_on(server: ServerThread) -> None:
    assert server.server is not None
    store: Any = server.server.context.login_store
    real = store.account_changes_since
    down = threading.Event()
    down.set()

    async def unavailable(after_id: int, limit: int = 1000) -> list[Any]:
        if down.is_set():
            raise ConnectionRefusedError("database unavailable")
        return list(await real(after_id, limit))

    with signed_in(server) as alice:
        store.account_changes_since = unavailable
        try:
            with pytest.raises(smtplib.SMTPDataError) as waiting:
                alice.sendmail(ALICE, [BOB], b"From: alice@example.test\r\nSubject: s\r\n\r\nhi\r\n")
            assert waiting.value.smtp_code == 451
            down.clear()
            cli(server, "account", "disable", ALICE)
            assert_ended(alice)  # the poll survived the outage
        finally:
            del store.account_changes_since
    assert server.messages(BOB) == []
