"""Hardening: originator header tricks, clients that never read, plus-address ownership, half-close,
bare Postmaster and address literals."""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    RawClient,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

FORGED = {
    "space-before-colon": b"From: alice@example.test\r\nFrom : bob@example.test\r\nSubject: x\r\n\r\nhi\r\n",
    "junk-line-hides-from": b"From: alice@example.test\r\nX-junk\r\nFrom: bob@example.test\r\n\r\nhi\r\n",
    "second-from-first": b"From : bob@example.test\r\nFrom: alice@example.test\r\n\r\nhi\r\n",
    "sender-field": b"From: alice@example.test\r\nSender: bob@example.test\r\n\r\nhi\r\n",
    "no-from": b"Subject: nobody\r\n\r\nhi\r\n",
    "padded-past-limit": b"From: alice@example.test\r\n" + b"X-Pad: " + b"p" * 900 + b"\r\n" * 1
    + (b"X-Pad: " + b"p" * 900 + b"\r\n") * 300 + b"From: bob@example.test\r\n\r\nhi\r\n",
}


@pytest.fixture
def roomy_server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data", smtp={"max_message_size": 2_000_000})) as server:
        yield server


@pytest.mark.parametrize("message", list(FORGED.values()), ids=list(FORGED))
def test_forged_originator_fields_are_refused(roomy_server: ServerThread, message: bytes) -> None:
    host, port = roomy_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(ALICE, [BOB], message)
    assert refused.value.smtp_code == 553
    assert roomy_server.messages(BOB) == []


def test_honest_message_with_sender_of_own_alias_passes(live_server: ServerThread) -> None:
    message = b"From: alice.liddell@example.test\r\nSender: alice@example.test\r\n\r\nhi\r\n"
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        assert client.sendmail(ALICE, [BOB], message) == {}


def test_tagged_address_that_belongs_to_someone_else_is_not_owned(live_server: ServerThread) -> None:
    live_server.run(live_server.admin.add_alias("alice+billing@example.test", ["finance@elsewhere.example"]))
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        assert client.mail("alice+billing@example.test")[0] == 553
        client.rset()
        assert client.mail("alice+news@example.test")[0] == 250


@pytest.fixture
def impatient_server(tmp_path: Path) -> Iterator[ServerThread]:
    config = server_config(tmp_path / "data", smtp={"timeouts": {"command": 0.5}})
    with running_server(config) as server:
        yield server


class _SessionEnded(logging.Handler):
    """Sets ``ended`` when the server logs the end of a session."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if '"event": "smtp.disconnect"' in record.getMessage():
            self.ended.set()


def _flood_without_reading(sock: socket.socket) -> None:
    command = b"EHLO " + b"x" * 250 + b"\r\n"
    with contextlib.suppress(OSError):
        for _ in range(100_000):  # bounded; ends with an error once the server gives up on us
            sock.sendall(command * 64)


def test_client_that_never_reads_is_dropped(impatient_server: ServerThread) -> None:
    watcher = _SessionEnded()
    logging.getLogger("hardmail.events").addHandler(watcher)
    sock = socket.create_connection(impatient_server.address("smtp"), timeout=60)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sender = threading.Thread(target=_flood_without_reading, args=(sock,), daemon=True)
    sender.start()
    try:
        assert watcher.ended.wait(30), "the server kept a session whose client never reads"
    finally:
        logging.getLogger("hardmail.events").removeHandler(watcher)
        sock.close()
        sender.join(30)


def test_half_closed_client_still_gets_its_replies(live_server: ServerThread) -> None:
    sock = socket.create_connection(live_server.address("smtp"), timeout=30)
    sock.sendall(b"EHLO c.example\r\nMAIL FROM:<a@elsewhere.example>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
                 b"Subject: half\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    sock.shutdown(socket.SHUT_WR)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    sock.close()
    assert b"250 2.0.0 OK: queued as" in received and b"221 2.0.0" in received
    assert len(live_server.messages(BOB)) == 1


def test_bare_postmaster_is_accepted(live_server: ServerThread) -> None:
    live_server.run(live_server.admin.add_alias("postmaster@example.test", [ALICE]))
    client = RawClient(live_server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    client.command("MAIL FROM:<a@elsewhere.example>")
    assert client.command("RCPT TO:<Postmaster>")[0] == 250
    client.command("DATA")
    assert client.command("Subject: pm\r\n\r\nhello\r\n.")[0] == 250
    assert len(live_server.messages(ALICE)) == 1
    client.close()


def test_address_literal_recipients_are_refused(live_server: ServerThread) -> None:
    host, port = live_server.address("submissions")
    with smtplib.SMTP_SSL(host, port, timeout=30, context=client_tls_context()) as client:
        client.login(ALICE, ALICE_PASSWORD)
        client.mail(ALICE)
        code, text = client.rcpt("someone@[127.0.0.1]")
    assert (code, text[:5]) == (550, b"5.1.2")
