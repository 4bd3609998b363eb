"""Hashes imported in Dovecot's form log in over real SMTP AUTH (submission, STARTTLS) and are
Argon2id after that first login."""

from __future__ import annotations

import smtplib

import pytest

from hardmail.admin.credentials import CredentialService
from hardmail.admin.hash_batch import import_hash_file
from support.dovecot_hashes import dovecot_hashes
from support.live import ALICE, BOB, ServerThread, client_tls_context

PASSWORD = "a password from the old server 9"


def _login(server: ServerThread, user: str, password: str, mechanism: str) -> None:
    with smtplib.SMTP(*server.address("submission"), timeout=30) as client:
        client.starttls(context=client_tls_context())
        client.ehlo("client.example")
        client.user, client.password = user, password
        client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))


def test_dovecot_hashes_log_in_over_smtp_and_are_upgraded(live_server: ServerThread) -> None:
    assert live_server.server is not None
    store = live_server.server.context.store
    forms = dovecot_hashes(PASSWORD)
    text = f"{ALICE}:{forms['SSHA512']}:1000:1000::/home/alice::\n{BOB}:{forms['BLF-CRYPT']}\n"
    report = live_server.run(import_hash_file(CredentialService(store, live_server.config.data_dir), text))
    assert [o.detail for o in report.imported] == ["ssha512", "bcrypt"] and not report.failed
    with pytest.raises(smtplib.SMTPAuthenticationError):
        _login(live_server, ALICE, PASSWORD + "x", "PLAIN")
    _login(live_server, ALICE, PASSWORD, "PLAIN")
    _login(live_server, BOB, PASSWORD, "LOGIN")
    for user in (ALICE, BOB):
        account = live_server.run(store.get_account(user))
        assert account is not None and account.password_hash.startswith("$argon2id$")
    assert live_server.run(store.credentials.list_legacy()) == []
    _login(live_server, ALICE, PASSWORD, "PLAIN")  # the Argon2id hash takes the same password
