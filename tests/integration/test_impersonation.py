"""Impersonation warnings over real SMTP: mail on the MX port (message authentication on, DNS a
real DNS server on loopback) whose From: pretends to be one of ours gets X-Hardmail-Warning and a
warning line at the top of its text; a forged X-Hardmail-Warning is removed; normal mail and mail
from an authenticated user are left alone; a message big enough to be kept in its incoming file
gets its warning line too."""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from support.dns_server import LoopbackDnsServer
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    ServerThread,
    client_tls_context,
    mx_config,
    running_server,
    send_mx,
)

ZONE: dict[tuple[str, str], Any] = {
    ("client.example", "A"): ["127.0.0.1"],
    ("1.0.0.127.in-addr.arpa", "PTR"): ["client.example."],
    # the attackers' own domains: SPF passes, so nothing but this check objects
    ("examp1e.test", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    ("examp1e.test", "MX"): ["10 mx.examp1e.test."],
    ("free-mail.test", "TXT"): ['"v=spf1 ip4:127.0.0.1 -all"'],
    ("free-mail.test", "MX"): ["10 mx.free-mail.test."],
}
DAVE = "dave@example.test"
FORWARD = "bob.forward@example.test"  # an alias with a copy for a mailbox outside
TAIL = (b"To: <bob@example.test>\r\nSubject: urgent payment\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <m1@free-mail.test>\r\n")
BODY = b"Please pay the invoice today.\r\n"
FORGED = b"X-Hardmail-Warning: none: this sender is known and safe\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with LoopbackDnsServer(ZONE) as dns, running_server(
            mx_config(tmp_path_factory.mktemp("imperson"), dns, impersonation={"prepend_warning": True},
                      smtp={"max_message_size": 2_000_000})) as running:
        running.run(running.admin.add_account(DAVE, "red dwarf smeg head 3 million", "Dave Lister"))
        running.run(running.admin.add_alias(FORWARD, [BOB, "bob.at.home@elsewhere.test"]))
        yield running


def deliver(server: ServerThread, sender: str, message: bytes) -> email.message.EmailMessage:
    before = set(server.messages(BOB))
    send_mx(server, sender, message)
    stored = [m for m in server.messages(BOB) if m not in before]  # file names do not sort by arrival
    assert len(stored) == 1
    parsed = email.message_from_bytes(stored[0], policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def test_a_colleagues_name_from_outside_is_flagged_and_the_forged_field_removed(server: ServerThread) -> None:
    message = deliver(server, "boss@free-mail.test",
                      FORGED + b'From: "Dave Lister" <boss@free-mail.test>\r\n' + TAIL + b"\r\n" + BODY)
    assert message.get_all("X-Hardmail-Warning") == [
        "The sender's name matches a person in your organisation, but the message came from outside "
        "(address boss@free-mail.test)"]
    assert "known and safe" not in message.as_string()
    assert text_of(message) == ("WARNING: The sender's name matches a person in your organisation, but\n"
                                "the message came from outside (address boss@free-mail.test).\n\n"
                                "Please pay the invoice today.\n")
    assert message["Authentication-Results"] is not None  # the other checks still ran


def test_a_look_alike_domain_in_a_multipart_message(server: ServerThread) -> None:
    body = (b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"UGxlYXNlIHBheSB0b2RheS4NCg==\r\n--b1\r\nContent-Type: text/html\r\n\r\n<p>Please pay today.</p>\r\n"
            b"--b1--\r\n")
    head = (b"From: Accounts <accounts@examp1e.test>\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="b1"\r\n')
    message = deliver(server, "accounts@examp1e.test", head + TAIL + b"\r\n" + body)
    assert message.get_all("X-Hardmail-Warning") == [
        "The sender's domain examp1e.test looks like your domain example.test"]
    assert text_of(message) == ("WARNING: The sender's domain examp1e.test looks like your domain\n"
                                "example.test.\n\n\n\nPlease pay today.\n")  # base64: whole 3-byte groups
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "WARNING" not in str(html.get_content())


def test_normal_mail_is_left_alone_but_loses_a_forged_field(server: ServerThread) -> None:
    raw = b"From: Rimmer <arnold@free-mail.test>\r\n" + TAIL + b"\r\n" + BODY
    message = deliver(server, "arnold@free-mail.test", FORGED + raw)
    assert message.get_all("X-Hardmail-Warning") is None
    assert text_of(message) == "Please pay the invoice today.\n"
    assert server.messages(BOB)[-1].endswith(raw)


def test_a_colleague_signed_in_gets_no_warning(server: ServerThread) -> None:
    with smtplib.SMTP(*server.address("submission"), timeout=30) as client:
        client.ehlo("client.example")
        client.starttls(context=client_tls_context())
        client.login(ALICE, ALICE_PASSWORD)
        before = len(server.messages(BOB))
        client.sendmail(ALICE, [BOB], b'From: "Dave Lister" <alice@example.test>\r\n' + TAIL + b"\r\n" + BODY)
    stored = server.messages(BOB)
    assert len(stored) == before + 1
    assert b"X-Hardmail-Warning" not in stored[-1] and stored[-1].endswith(b"\r\n\r\n" + BODY)


def test_a_big_message_kept_in_its_file_gets_the_warning_line(server: ServerThread) -> None:
    filler = (b"x" * 76 + b"\r\n") * 6000  # ~470 KB: past the in-memory size, received into a file
    message = deliver(server, "boss@free-mail.test",
                      b'From: "dave lister" <boss@free-mail.test>\r\n' + TAIL + b"\r\n" + BODY + filler)
    assert message.get_all("X-Hardmail-Warning") is not None
    text = text_of(message)
    assert text.startswith("WARNING: The sender's name matches") and text.endswith(
        "Please pay the invoice today.\n" + ("x" * 76 + "\n") * 6000)


def test_a_copy_forwarded_outside_is_sent_as_received(server: ServerThread) -> None:
    before = set(server.messages(BOB))
    raw = (b'From: "Dave Lister" <boss@free-mail.test>\r\n' + TAIL.replace(b"<m1@", b"<forwarded@") + b"\r\n"
           + BODY)
    host, port = server.address("smtp")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail("boss@free-mail.test", [FORWARD], FORGED + raw)
    stored = [m for m in server.messages(BOB) if m not in before]
    assert len(stored) == 1
    assert b"X-Hardmail-Warning: The sender's name matches" in stored[0]
    assert stored[0].endswith(b"\r\n\r\nWARNING: The sender's name matches a person in your organisation, but\r\n"
                              b"the message came from outside (address boss@free-mail.test).\r\n\r\n" + BODY)
    queued = [data for path in server.spool_files() if path.suffix == ".eml" and path.parent.name == "queue"
              and b"<forwarded@free-mail.test>" in (data := path.read_bytes())]
    assert len(queued) == 1
    assert b"X-Hardmail-Warning" not in queued[0] and b"WARNING" not in queued[0]  # the forged field is gone too
    assert queued[0].endswith(raw) and b"Authentication-Results:" in queued[0]
