"""The listener kinds imap, imaps, pop3 and pop3s over real sockets: sessions dispatched through the
registry (a stand-in line protocol that logs in through the login driver, since the IMAP and POP3
sessions are registered by their own modules), implicit TLS, the access hook per listener, the end
of a session whose account is disabled, kinds no session serves, and ``hardmail serve`` printing
and reporting them."""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.app import prepare_for_workers, start_server
from hardmail.core.ids import new_id
from hardmail.core.replies import Reply
from hardmail.ops.log import EventLogger
from hardmail.policy.access import IpRange
from hardmail.server.access_hook import access_hook_of
from hardmail.server.channel import Channel
from hardmail.server.context import ServerContext
from hardmail.server.hooks import SessionFacts
from hardmail.server.listener import IMPLICIT_TLS_KINDS, KINDS, SESSION_FACTORIES, served_kinds, session_factories
from hardmail.server.login import LoginDriver
from hardmail.server.prefork import bind_listeners
from support.cli_process import run_cli, serving
from support.live import ALICE, ALICE_PASSWORD, ServerThread, client_tls_context, running_server, server_config

MAILBOX_KINDS = ("imap", "imaps", "pop3", "pop3s")


class LineLoginSession:
    """A stand-in mailbox protocol: greets, then ``LOGIN user password`` → ``OK`` / ``NO <kind>``,
    ``WHO`` → the account; logs in through the login driver like the IMAP and POP3 sessions."""

    def __init__(self, ctx: ServerContext, kind: str, channel: Channel) -> None:
        self.ctx, self.kind, self.channel = ctx, kind, channel
        self.id = new_id()
        protocol = "imap" if kind.startswith("imap") else "pop3"
        self.login = LoginDriver(ctx, EventLogger(session=self.id, listener=kind), protocol=protocol,
                                 facts=self.facts)
        self.tls: dict[str, str] | None = None

    def facts(self) -> SessionFacts:
        peer_ip, peer_port = self.channel.peer()
        return SessionFacts(session_id=self.id, listener=self.kind, peer_ip=peer_ip, peer_port=peer_port, helo=None,
                            tls=self.tls, account=self.login.account)

    async def run(self) -> None:
        try:
            for hook in self.ctx.hooks:
                refusal = await hook.on_connect(self.facts())
                if refusal is not None:
                    self.channel.write(f"BYE {refusal.code}\r\n".encode())
                    return
            if self.kind in IMPLICIT_TLS_KINDS:
                await self.channel.start_tls(self.ctx.tls.context(), 30)
                self.tls = {"version": str(self.channel.ssl_object().version())}  # type: ignore[union-attr]
            self.channel.write(f"HELLO {self.kind}\r\n".encode())
            await self._commands()
        finally:
            self.ctx.sessions.remove(self.id)
            for hook in self.ctx.hooks:
                await hook.on_disconnect(self.facts())
            self.channel.close()

    async def _commands(self) -> None:
        buffer = b""
        while data := await self.channel.read():
            buffer += data
            while b"\r\n" in buffer:
                line, _, buffer = buffer.partition(b"\r\n")
                words = line.decode().split(" ", 2)
                if words[0] == "LOGIN" and len(words) == 3:
                    result = await self.login.password_login(words[1], words[2], "LOGIN")
                    self.channel.write(b"OK\r\n" if result.kind == "success" else f"NO {result.kind}\r\n".encode())
                elif words[0] == "WHO":
                    self.channel.write(f"{self.login.account}\r\n".encode())

    def shut_down_if_idle(self) -> bool:
        self.channel.close()
        return True

    def end_session(self, reply: Reply) -> None:
        self.channel.write(f"BYE {reply.code}\r\n".encode())
        self.channel.close()


@pytest.fixture
def stand_in_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    session_factories()  # every real session module is imported first: the stand-ins replace theirs
    for kind in MAILBOX_KINDS:
        monkeypatch.setitem(SESSION_FACTORIES, kind, LineLoginSession)


@pytest.fixture
def mailbox_server(tmp_path: Path, stand_in_sessions: None) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as server:
        yield server


class LineClient:
    def __init__(self, address: tuple[str, int], tls: bool) -> None:
        sock = socket.create_connection(address, timeout=30)
        self.sock: socket.socket = client_tls_context().wrap_socket(sock) if tls else sock
        self.file = self.sock.makefile("rb")

    def line(self) -> str:
        return self.file.readline().decode().rstrip("\r\n")

    def ask(self, text: str) -> str:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.mark.parametrize("kind", MAILBOX_KINDS)
def test_each_kind_is_served_by_its_registered_session(mailbox_server: ServerThread, kind: str) -> None:
    client = LineClient(mailbox_server.address(kind), tls=kind in IMPLICIT_TLS_KINDS)
    try:
        assert client.line() == f"HELLO {kind}"
        assert isinstance(client.sock, ssl.SSLSocket) == (kind in IMPLICIT_TLS_KINDS)
        assert client.ask(f"LOGIN {ALICE} wrong-password") == "NO failure"
        assert client.ask(f"LOGIN {ALICE} {ALICE_PASSWORD}") == "OK"
        assert client.ask("WHO") == ALICE
    finally:
        client.close()
    bound = {b.kind for b in mailbox_server.server.bound} if mailbox_server.server else set()
    assert set(KINDS) <= bound


def test_a_disabled_account_ends_its_mailbox_session(tmp_path: Path, stand_in_sessions: None) -> None:
    config = server_config(tmp_path / "data", auth={"session_check_seconds": 0.05})
    with running_server(config) as server:
        client = LineClient(server.address("imaps"), tls=True)
        try:
            assert client.line() == "HELLO imaps"
            assert client.ask(f"LOGIN {ALICE} {ALICE_PASSWORD}") == "OK"
            assert client.ask("WHO") == ALICE
            server.run(server.admin.set_account_enabled(ALICE, False))
            assert client.line() == "BYE 421"  # the account-change poll ended the session
        finally:
            client.close()


def test_ip_ranges_apply_per_protocol(mailbox_server: ServerThread) -> None:
    assert mailbox_server.server is not None
    context = mailbox_server.server.context
    without_imap = IpRange("loopback without imap", 50, "127.0.0.0", "127.255.255.255",
                           protocols=frozenset({"smtp", "submission", "pop3"}))
    mailbox_server.run(context.store.access.add_range(without_imap))
    hook = access_hook_of(context)
    assert hook is not None
    hook.forget_cached_ranges()
    for kind, greeting in (("imap", "BYE 554"), ("imaps", "BYE 554"), ("pop3", "HELLO pop3")):
        client = LineClient(mailbox_server.address(kind), tls=False)  # refused before any TLS
        try:
            assert client.line() == greeting
        finally:
            client.close()


def test_a_kind_no_session_serves_is_not_listened_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    session_factories()
    for kind in MAILBOX_KINDS:
        monkeypatch.delitem(SESSION_FACTORIES, kind, raising=False)
    with running_server(server_config(tmp_path / "data")) as server:
        assert server.server is not None
        assert {b.kind for b in server.server.bound} == {"smtp", "submission", "submissions"}
    unserved = [json.loads(r.getMessage()) for r in caplog.records if "server.listener_unserved" in r.getMessage()]
    assert sorted(entry["kind"] for entry in unserved) == sorted(MAILBOX_KINDS)


def test_serve_prints_and_reports_every_listener_kind(tmp_path: Path) -> None:
    with serving("--listen-imaps", "127.0.0.1:0,127.0.0.1:0", cwd=tmp_path) as server:
        status = json.loads(run_cli("status", "--json", cwd=tmp_path).stdout)
    printed = [line.split() for line in server.started if line.split()[:1] and line.split()[0] in KINDS]
    assert {words[0] for words in printed} == set(KINDS)
    assert [words[0] for words in printed].count("imaps") == 3  # repeated and comma-separated: one each
    served = {(words[0], words[1]) for words in printed if "served:" not in words}
    assert {(item["kind"], item["address"]) for item in status["listeners"]} == served
    for words in printed:
        port = int(words[1].rsplit(":", 1)[1])
        assert (port == 0) == ("served:" in words)  # an unserved kind shows its configured address


def test_sockets_bound_before_a_fork_serve_every_kind(tmp_path: Path, stand_in_sessions: None) -> None:
    """What a worker process gets from the supervisor: sockets bound for every served kind."""
    config = server_config(tmp_path / "data")
    sockets = bind_listeners(config, served_kinds())
    assert {s.kind for s in sockets} == set(KINDS)
    thread = ServerThread(config)
    thread.thread.start()
    try:
        thread.run(prepare_for_workers(config))  # what the supervisor does before it forks
        thread.server = thread.run(start_server(config, sockets, worker=1))
        for kind in MAILBOX_KINDS:
            client = LineClient(thread.address(kind), tls=kind in IMPLICIT_TLS_KINDS)
            try:
                assert client.line() == f"HELLO {kind}"
            finally:
                client.close()
    finally:
        thread.stop()
        for listening in sockets:
            listening.sock.close()
