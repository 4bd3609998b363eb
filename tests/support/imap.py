"""Test support for the IMAP server: a raw line client (for exact responses) and imaplib helpers.

The raw client reads whole responses, literals included, so tests can compare what the server
wrote byte for byte; imaplib is the independent client of Python's standard library.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class RawImap:
    """An IMAP client that sends lines as written and reads responses as the server sent them."""

    def __init__(self, address: tuple[str, int], *, tls: bool = False, timeout: float = 20,
                 source: str | None = None) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            address, timeout=timeout, source_address=(source, 0) if source else None)
        if tls:
            self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="localhost")
        self.buffer = b""
        self.counter = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One response line with any literals it announces (their bytes included), CRLF kept."""
        out = b""
        while True:
            part = self._raw_line()
            out += part
            match = _LITERAL.search(part)
            if match is None:
                return out
            out += self._exactly(int(match.group(1)))

    def _raw_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; unread: {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line + b"\r\n"

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed inside a literal")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def command(self, text: str | bytes, tag: str | None = None) -> tuple[list[bytes], bytes]:
        """Send ``tag text``; (untagged and continuation lines, the tagged line)."""
        if tag is None:
            self.counter += 1
            tag = f"t{self.counter}"
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return lines, line
            lines.append(line)

    def starttls(self) -> None:
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname="localhost")

    def login(self, user: str = ALICE, password: str = ALICE_PASSWORD) -> bytes:
        return self.command(f'LOGIN "{user}" "{password}"')[1]

    def closed_by_server(self) -> bool:
        try:
            self.sock.settimeout(10)
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        with suppress(OSError):
            self.sock.close()


@contextmanager
def raw(server: ServerThread, kind: str = "imaps") -> Iterator[RawImap]:
    client = RawImap(server.address(kind), tls=kind == "imaps")
    try:
        client.line()  # the greeting
        yield client
    finally:
        client.close()


@contextmanager
def imaps(server: ServerThread, user: str = ALICE, password: str = ALICE_PASSWORD) -> Iterator[imaplib.IMAP4_SSL]:
    host, port = server.address("imaps")
    client = imaplib.IMAP4_SSL(host, port, ssl_context=client_tls_context(), timeout=20)
    try:
        client.login(user, password)
        yield client
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def message(subject: str = "Hello", body: str = "Hi there.\r\n", sender: str = "bob@example.test") -> bytes:
    return (f"From: Bob <{sender}>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            "Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body).encode()
