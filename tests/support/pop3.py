"""Test support for POP3: a live server with POP3 listeners and mail in INBOXes, and helpers."""

from __future__ import annotations

import contextlib
import poplib
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context, running_server, server_config


def pop3_config(data_dir: Path, **sections: dict[str, Any]) -> Any:
    return server_config(data_dir, **sections)


def deliver(server: ServerThread, recipient: str, message: bytes, sender: str = "sender@elsewhere.example") -> None:
    """Hand ``message`` for ``recipient`` to the MX port (local delivery into its INBOX)."""
    host, port = server.address("smtp")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(sender, [recipient], message)


def message(number: int, body: bytes = b"") -> bytes:
    return (f"From: sender@elsewhere.example\r\nTo: {ALICE}\r\nSubject: message {number}\r\n"
            f"Message-ID: <m{number}@elsewhere.example>\r\n\r\nBody of message {number}.\r\n").encode() + body


@contextlib.contextmanager
def pop3_server(data_dir: Path, messages: int = 0, **sections: dict[str, Any]) -> Iterator[ServerThread]:
    with running_server(pop3_config(data_dir, **sections)) as live:
        for number in range(1, messages + 1):
            deliver(live, ALICE, message(number))
        yield live


def pop3s_login(server: ServerThread, user: str = ALICE, password: str = ALICE_PASSWORD) -> poplib.POP3_SSL:
    host, port = server.address("pop3s")
    client = poplib.POP3_SSL(host, port, context=client_tls_context(), timeout=30)
    client.user(user)
    client.pass_(password)
    return client


def stls_client(server: ServerThread) -> poplib.POP3:
    host, port = server.address("pop3")
    client = poplib.POP3(host, port, timeout=30)
    client.stls(client_tls_context())
    return client
