"""Credentials over real SMTP: smtplib over STARTTLS on the submission listener.

An account with 2FA refuses its main password exactly like a wrong one (the reason goes to the
login history, never on the wire) and accepts an SMTP-scoped app password; an IMAP-only app
password is refused for SMTP like a wrong password;
SCRAM-SHA-256 through an independent client library (scramp) succeeds with the right password and
fails with a wrong one.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator

import pytest
from scramp import ScramClient

from hardmail.admin.credentials import CredentialService
from hardmail.auth import totp
from support.live import ALICE, ALICE_PASSWORD, BOB, BOB_PASSWORD, ServerThread, client_tls_context


def _service(server: ServerThread) -> CredentialService:
    assert server.server is not None
    return CredentialService(server.server.context.store, server.config.data_dir)


def _enable_2fa(server: ServerThread, address: str) -> None:
    service = _service(server)
    enrolment = server.run(service.begin_two_factor(address))
    code = totp.code_at(enrolment.secret, totp.time_step(server.server.context.clock.now()))  # type: ignore[union-attr]
    server.run(service.confirm_two_factor(enrolment, code))


def _app_password(server: ServerThread, address: str, name: str, scopes: list[str]) -> str:
    _record, secret = server.run(_service(server).add_app_password(address, name, scopes))
    return secret


@pytest.fixture
def submission(live_server: ServerThread) -> Iterator[Callable[[], smtplib.SMTP]]:
    opened: list[smtplib.SMTP] = []

    def connect() -> smtplib.SMTP:
        client = smtplib.SMTP(*live_server.address("submission"), timeout=30)
        opened.append(client)
        client.ehlo("client.example")
        client.starttls(context=client_tls_context())
        client.ehlo("client.example")
        return client

    yield connect
    for client in opened:
        client.close()


def test_2fa_account_refuses_main_password_and_accepts_smtp_app_password(
    live_server: ServerThread, submission: Callable[[], smtplib.SMTP]
) -> None:
    _enable_2fa(live_server, ALICE)
    secret = _app_password(live_server, ALICE, "laptop", ["smtp"])
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        submission().login(ALICE, ALICE_PASSWORD)
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        submission().login(ALICE, "not the password at all")
    assert (refused.value.smtp_code, refused.value.smtp_error) == (
        wrong.value.smtp_code, wrong.value.smtp_error) == (535, b"5.7.8 Authentication credentials invalid")
    code, _ = submission().login(ALICE, secret)
    assert code == 235


def test_imap_only_app_password_is_refused_for_smtp_like_a_wrong_password(
    live_server: ServerThread, submission: Callable[[], smtplib.SMTP]
) -> None:
    secret = _app_password(live_server, BOB, "mail-reader", ["imap"])
    with pytest.raises(smtplib.SMTPAuthenticationError) as out_of_scope:
        submission().login(BOB, secret)
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        submission().login(BOB, "not the password at all")
    assert (out_of_scope.value.smtp_code, out_of_scope.value.smtp_error) == (
        wrong.value.smtp_code, wrong.value.smtp_error) == (535, b"5.7.8 Authentication credentials invalid")


def _scram_login(client: smtplib.SMTP, username: str, password: str) -> tuple[int, bytes]:
    scram = ScramClient(["SCRAM-SHA-256"], username, password)
    answers = iter([scram.get_client_first])

    def authobject(challenge: bytes | None = None) -> str:
        if challenge is None:
            return next(answers)()
        text = challenge.decode()
        if text.startswith("v="):
            scram.set_server_final(text)  # raises if the server could not prove it knows the secrets
            return ""
        scram.set_server_first(text)
        return scram.get_client_final()

    return client.auth("SCRAM-SHA-256", authobject)


def test_scram_sha_256_with_the_right_password(
    live_server: ServerThread, submission: Callable[[], smtplib.SMTP]
) -> None:
    client = submission()
    assert "SCRAM-SHA-256" in client.esmtp_features["auth"].split()
    code, _ = _scram_login(client, BOB, BOB_PASSWORD)
    assert code == 235
    events = live_server.run(live_server.server.context.store.credentials.list_login_events(BOB))  # type: ignore[union-attr]
    assert (events[0].kind, events[0].result, events[0].mechanism, events[0].client_ip) == (
        "login", "success", "SCRAM-SHA-256", "127.0.0.1")


@pytest.mark.parametrize("user", [BOB, "nobody@example.test"])
def test_scram_sha_256_with_a_wrong_password_or_unknown_user(
    submission: Callable[[], smtplib.SMTP], user: str
) -> None:
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        _scram_login(submission(), user, "wrong password entirely")
    assert refused.value.smtp_code == 535


def test_scram_for_a_2fa_account_is_refused_like_a_wrong_password(
    live_server: ServerThread, submission: Callable[[], smtplib.SMTP]
) -> None:
    _enable_2fa(live_server, BOB)
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        _scram_login(submission(), BOB, BOB_PASSWORD)
    assert (refused.value.smtp_code, refused.value.smtp_error) == (535, b"5.7.8 Authentication credentials invalid")
    events = live_server.run(live_server.server.context.store.credentials.list_login_events(BOB))  # type: ignore[union-attr]
    assert (events[0].result, events[0].detail) == ("refused", "two-factor account: use an app password")
