"""Test support: a real hardmail server on loopback, run in a thread with its own loop, and clients.

Tests talk to it with real clients (smtplib, swaks, raw sockets). Nothing here sleeps: start-up and
shutdown are awaited through futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
import os
import shutil
import smtplib
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hardmail.admin.service import AdminService
from hardmail.app import RunningServer, start_server
from hardmail.config.schema import Config
from support.dns_server import LoopbackDnsServer

T = TypeVar("T")

DOMAIN = "example.test"
ALICE = "alice@example.test"
ALICE_PASSWORD = "correct horse battery staple"
BOB = "bob@example.test"
BOB_PASSWORD = "another long passphrase 42"
CAROL_DISABLED = "carol@example.test"
CAROL_PASSWORD = "disabled users long passphrase 7"
HOSTNAME = "mail.example.test"
# Every listener kind on an ephemeral loopback port (a test that names its own [listen] starts from it,
# so that no default port, 2143 and the like, is bound by a test).
EPHEMERAL_LISTEN: dict[str, list[str]] = {kind: ["127.0.0.1:0"] for kind in
                                          ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")}


def server_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {
        "server": {"hostname": HOSTNAME, "data_dir": str(data_dir)},
        "listen": dict(EPHEMERAL_LISTEN),
        "auth": {"argon2": {"time_cost": 1, "memory_cost": 8192}},
        "smtp": {"max_message_size": 200_000},
        "queue": {"run_delivery": False},  # tests never send mail to the Internet
        # no DNS look-ups from the MX checks (tests never reach the Internet); msgauth tests turn them on
        "inbound": {"enabled": False},
        "antispam": {"enabled": False},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Config.model_validate(raw)


def mx_config(tmp_path: Path, dns: LoopbackDnsServer, **sections: dict[str, Any]) -> Config:
    """server_config() under ``tmp_path/data`` with the MX checks on, resolving through ``dns``."""
    settings: dict[str, dict[str, Any]] = {
        "dns": {"nameservers": ["127.0.0.1"], "port": dns.port, "timeout": 5.0},
        "inbound": {"enabled": True},
        "antispam": {"enabled": True},
    }
    for name, values in sections.items():
        settings.setdefault(name, {}).update(values)
    return server_config(tmp_path / "data", **settings)


class ServerThread:
    """Runs start_server() in a private event loop on a daemon thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RunningServer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.server = self.run(start_server(self.config))

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    def address(self, kind: str) -> tuple[str, int]:
        assert self.server is not None
        return self.server.address(kind)

    @property
    def admin(self) -> AdminService:
        assert self.server is not None
        return AdminService(self.server.context.store, self.config.auth.argon2)

    def seed(self) -> None:
        admin = self.admin
        self.run(admin.add_domain(DOMAIN))
        self.run(admin.add_account(ALICE, ALICE_PASSWORD))
        self.run(admin.add_account(BOB, BOB_PASSWORD))
        self.run(admin.add_account(CAROL_DISABLED, CAROL_PASSWORD))
        self.run(admin.set_account_enabled(CAROL_DISABLED, False))
        self.run(admin.add_alias("sales@example.test", [ALICE, BOB]))
        self.run(admin.add_alias("alice.liddell@example.test", [ALICE]))

    def maildir(self, address: str) -> mailbox.Maildir:
        assert self.server is not None
        path = self.server.context.acceptor.maildir.mailbox_path(address)
        return mailbox.Maildir(str(path), create=False)

    def messages(self, address: str) -> list[bytes]:
        assert self.server is not None
        path = self.server.context.acceptor.maildir.mailbox_path(address) / "new"
        if not path.exists():
            return []
        return [p.read_bytes() for p in sorted(path.iterdir(), key=delivery_order)]

    def all_mail_files(self) -> list[Path]:
        root = self.config.maildir_root
        return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []

    def spool_files(self) -> list[Path]:
        root = self.config.spool_dir
        return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def delivery_order(path: Path) -> tuple[int, int, str]:
    """Maildir files in the order they were delivered: ``SECONDS.MMICROS...`` names sorted by number
    (the microseconds are not zero-padded, so sorting the names as text is not delivery order)."""
    seconds, _, rest = path.name.partition(".M")
    micros = rest.partition("P")[0]
    if seconds.isdigit() and micros.isdigit():
        return int(seconds), int(micros), path.name
    return 0, 0, path.name


@contextlib.contextmanager
def running_server(config: Config) -> Iterator[ServerThread]:
    server = ServerThread(config)
    server.start()
    try:
        server.seed()
        yield server
    finally:
        server.stop()


def client_tls_context() -> ssl.SSLContext:
    """Clients in tests trust the server's self-signed certificate by not verifying it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class RawClient:
    """A line-level SMTP client over a plain socket, for transcripts and malformed input."""

    def __init__(self, address: tuple[str, int], timeout: float = 20, tls_on_connect: bool = False) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection(address, timeout=timeout)
        self.buffer = b""
        if tls_on_connect:
            self.starttls()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                line, self.buffer = self.buffer, b""
                return line
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_reply(self) -> tuple[int, list[str]]:
        """One (possibly multi-line) reply: its code and text lines."""
        lines = []
        while True:
            line = self.read_line()
            if not line:
                return 0, lines
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), lines

    def command(self, line: str) -> tuple[int, list[str]]:
        self.send(line.encode() + b"\r\n")
        return self.read_reply()

    def starttls(self) -> None:
        assert not isinstance(self.sock, ssl.SSLSocket)
        self.sock = client_tls_context().wrap_socket(self.sock)

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


def require_program(name: str) -> str:
    """The program's path; skips the test on a laptop without it, fails in CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


def send_mx(server: ServerThread, sender: str, message: bytes) -> None:
    """Hand ``message`` for BOB to the server's MX port."""
    host, port = server.address("smtp")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.ehlo("client.example")
        client.sendmail(sender, [BOB], message)
