"""The security invariants of DESIGN.md, shown over real sockets on loopback."""

from __future__ import annotations

import base64
import smtplib

import pytest

from hardmail.admin.service import AdminService
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    CAROL_DISABLED,
    CAROL_PASSWORD,
    RawClient,
    ServerThread,
    client_tls_context,
)

PLAIN_MESSAGE = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: x\r\n\r\nbody\r\n"


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


@pytest.mark.parametrize("kind", ["smtp", "submission"])
def test_no_auth_before_tls(live_server: ServerThread, kind: str) -> None:
    client = RawClient(live_server.address(kind))
    assert client.read_reply()[0] == 220
    code, lines = client.command("EHLO client.example")
    assert code == 250
    assert not any(line.upper().startswith("AUTH") for line in lines)
    assert "STARTTLS" in lines
    code, lines = client.command("AUTH PLAIN " + _plain(ALICE, ALICE_PASSWORD))
    assert code in (538, 530)
    assert lines[0].startswith(("5.7.11", "5.7.0"))
    client.close()


def test_mx_never_offers_auth_even_inside_tls(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    assert client.command("STARTTLS")[0] == 220
    client.starttls()
    code, lines = client.command("EHLO client.example")
    assert code == 250 and not any(line.startswith("AUTH") for line in lines)
    assert client.command("AUTH PLAIN " + _plain(ALICE, ALICE_PASSWORD))[0] == 502
    client.close()


def test_submission_offers_auth_after_starttls(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("submission"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("STARTTLS")
    client.starttls()
    _, lines = client.command("EHLO client.example")
    assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in lines
    assert "STARTTLS" not in lines
    client.close()


def test_submission_requires_starttls_then_auth(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("submission"))
    client.read_reply()
    client.command("EHLO client.example")
    code, lines = client.command(f"MAIL FROM:<{ALICE}>")
    assert (code, lines[0][:5]) == (530, "5.7.0")
    client.command("STARTTLS")
    client.starttls()
    client.command("EHLO client.example")
    code, lines = client.command(f"MAIL FROM:<{ALICE}>")
    assert (code, lines[0][:5]) == (530, "5.7.0")
    client.close()


def test_starttls_pipelined_commands_are_discarded(live_server: ServerThread) -> None:
    """CVE-2011-0411 class: a command injected after STARTTLS must not run inside TLS."""
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.send(b"STARTTLS\r\nMAIL FROM:<evil@attacker.example>\r\n")
    assert client.read_reply()[0] == 220
    client.starttls()
    code, _ = client.command("RCPT TO:<bob@example.test>")
    assert code == 503  # no MAIL survived the handshake
    client.close()


@pytest.mark.parametrize(
    ("user", "password"),
    [(ALICE, "wrong password entirely"), ("nobody@example.test", "whatever password 1"),
     (CAROL_DISABLED, CAROL_PASSWORD), ("not-an-address", "x")],
)
def test_auth_failures_look_the_same(live_server: ServerThread, user: str, password: str) -> None:
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client, \
            pytest.raises(smtplib.SMTPAuthenticationError) as failure:
        client.login(user, password)
    assert failure.value.smtp_code == 535
    assert failure.value.smtp_error == b"5.7.8 Authentication credentials invalid"


def _authenticated(server: ServerThread) -> smtplib.SMTP_SSL:
    host, port = server.address("submissions")
    client = smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context())
    client.login(ALICE, ALICE_PASSWORD)
    return client


def test_sender_must_be_owned(live_server: ServerThread) -> None:
    with _authenticated(live_server) as client:
        code, text = client.mail(BOB)
        assert (code, text[:5]) == (553, b"5.7.1")
        client.rset()
        assert client.mail("alice.liddell@example.test")[0] == 250  # an alias of alice
        client.rset()
        assert client.mail("alice+lists@example.test")[0] == 250  # plus address of her own


def test_from_header_must_be_owned(live_server: ServerThread) -> None:
    forged = b"From: bob@example.test\r\nTo: bob@example.test\r\nSubject: forged\r\n\r\nhi\r\n"
    with _authenticated(live_server) as client, pytest.raises(smtplib.SMTPDataError) as refused:
        client.sendmail(ALICE, [BOB], forged)
    assert refused.value.smtp_code == 553
    assert live_server.messages(BOB) == []


def test_no_open_relay_on_mx(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    assert client.command("MAIL FROM:<someone@elsewhere.example>")[0] == 250
    code, lines = client.command("RCPT TO:<victim@elsewhere.example>")
    assert (code, lines[0][:5]) == (554, "5.7.1")
    code, lines = client.command("RCPT TO:<nobody@example.test>")
    assert (code, lines[0][:5]) == (550, "5.1.1")
    assert client.command(f"RCPT TO:<{BOB}>")[0] == 250
    client.close()


def test_authenticated_relay_goes_to_durable_spool(live_server: ServerThread) -> None:
    message = b"From: alice@example.test\r\nTo: x@elsewhere.example\r\nSubject: out\r\n\r\nhi\r\n"
    with _authenticated(live_server) as client:
        assert client.sendmail(ALICE, ["x@elsewhere.example"], message) == {}
    assert live_server.server is not None
    queue = live_server.server.context.acceptor.queue
    [row] = live_server.run(queue.store.list_queued())
    assert [(r.address, r.state) for r in row.recipients] == [("x@elsewhere.example", "pending")]
    assert row.origin_account == ALICE
    [spooled] = queue.spool.list()  # the fsync'd spool file behind the row
    assert spooled.queue_id == row.queue_id
    _, data = queue.spool.load(row.queue_id)
    assert data.endswith(message)


def test_submission_adds_message_id_and_date(live_server: ServerThread) -> None:
    bare = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: bare\r\n\r\nhi\r\n"
    with _authenticated(live_server) as client:
        client.sendmail(ALICE, [BOB], bare)
    [stored] = live_server.messages(BOB)
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nMessage-ID: <" in head and b"\r\nDate: " in head


def test_size_limit_enforced_while_streaming(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    code, _ = client.command("MAIL FROM:<a@elsewhere.example> SIZE=999999999")
    assert code == 552
    client.command("MAIL FROM:<a@elsewhere.example>")
    client.command(f"RCPT TO:<{BOB}>")
    assert client.command("DATA")[0] == 354
    line = b"x" * 998 + b"\r\n"
    client.send(b"Subject: big\r\n\r\n" + line * 300 + b".\r\n")  # 300 kB > 200 kB limit
    code, lines = client.read_reply()
    assert (code, lines[0][:5]) == (552, "5.3.4")
    assert live_server.messages(BOB) == []
    client.close()


def test_alias_and_catch_all_delivery(live_server: ServerThread) -> None:
    live_server.run(live_server.admin.add_alias("@example.test", [BOB]))
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@elsewhere.example>")
    assert client.command("RCPT TO:<sales@example.test>")[0] == 250
    assert client.command("RCPT TO:<random-name@example.test>")[0] == 250
    assert client.command("RCPT TO:<alice+tag@example.test>")[0] == 250
    client.command("DATA")
    assert client.command("Subject: t\r\n\r\nhello\r\n.")[0] == 250
    assert len(live_server.messages(ALICE)) == 1
    assert len(live_server.messages(BOB)) == 1  # one copy even when two recipients lead to bob
    client.close()


def test_disabled_account_receives_nothing(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@elsewhere.example>")
    code, lines = client.command(f"RCPT TO:<{CAROL_DISABLED}>")
    assert (code, lines[0][:5]) == (550, "5.1.1")  # answered as unknown (smtp.reveal_disabled_recipients)
    client.close()


def test_account_disabled_by_another_process_cannot_log_in_at_once(live_server: ServerThread) -> None:
    """The look-up cache never delays a disable: logins read the database itself."""
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        assert client.mail(ALICE)[0] == 250  # alice's account is now in the server's cache
    assert live_server.server is not None
    store = live_server.server.context.store
    other_process = AdminService(getattr(store, "inner", store), live_server.config.auth.argon2)
    live_server.run(other_process.set_account_enabled(ALICE, False))
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client, \
            pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(ALICE, ALICE_PASSWORD)
