"""Limits and bad input over real sockets: line and literal limits (LITERAL-, APPENDLIMIT), APPEND
refused before its data (TRYCREATE, OVERQUOTA), connections per account and per address, a fast
client slowed down but answered, and a client that never reads its responses cannot make the
server buffer them without bound."""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.server.imap_session import ImapSession
from support.imap import RawImap, message, raw
from support.live import ALICE, ServerThread, client_tls_context, running_server, server_config

LIMITS = {"max_line": 2048, "max_literal": 100_000, "connections_per_account": 3, "connections_per_ip": 6,
          "commands_per_second": 20, "login_timeout": 3}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = server_config(tmp_path_factory.mktemp("imap-limits") / "data", imap=LIMITS)
    with running_server(config) as live:
        yield live


def test_long_line_gets_bad_and_the_session_goes_on(server: ServerThread) -> None:
    with raw(server) as client:
        client.send(b"a NOOP " + b"x" * 5000 + b"\r\n")
        assert client.line().startswith((b"* BAD [TOOBIG]", b"a BAD [TOOBIG]"))
        _, done = client.command("NOOP")
        assert b" OK " in done


def test_literal_limits(server: ServerThread) -> None:
    with raw(server) as client:
        client.send(b"a LOGIN {5000+}\r\n" + b"x" * 5000 + b" y\r\n")  # LITERAL- before login: 4096 at most
        assert client.line().startswith(b"a BAD")
        assert client.login().startswith(b"t1 OK")
        client.send(b"b APPEND INBOX {100001}\r\n")  # over APPENDLIMIT: refused before "+"
        assert client.line().startswith(b"b NO [TOOBIG]")
        client.send(b"c APPEND Nowhere {10}\r\n")
        assert client.line().startswith(b"c NO [TRYCREATE]")
        untagged, _ = client.command("CAPABILITY")
        assert b" APPENDLIMIT=100000 " in untagged[0]


def test_append_over_quota(server: ServerThread, tmp_path: Path) -> None:
    assert server.server is not None and server.server.context.mailboxes is not None
    store = server.server.context.mailboxes
    server.run(store.set_quota(ALICE, 1000, None))
    try:
        with raw(server) as client:
            client.login()
            data = message("too big for the quota", body="y" * 2000)
            client.send(b"a APPEND INBOX {%d}\r\n" % len(data))
            assert client.line().startswith(b"a NO [OVERQUOTA]")
            client.send(b"b APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")  # non-synchronizing
            assert client.until("b")[1].startswith(b"b NO [OVERQUOTA]")
            untagged, _ = client.command("GETQUOTAROOT INBOX")
            assert untagged[0] == b'* QUOTAROOT "INBOX" ""\r\n' or untagged[0].startswith(b"* QUOTAROOT INBOX")
            assert untagged[1].startswith(b'* QUOTA "" (STORAGE ')
    finally:
        server.run(store.set_quota(ALICE, None, None))


def test_sessions_per_account(server: ServerThread) -> None:
    clients = [RawImap(server.address("imaps"), tls=True) for _ in range(4)]
    try:
        answers = []
        for client in clients:
            client.line()
            answers.append(client.login())
        assert [a.startswith(b"t1 OK") for a in answers] == [True, True, True, False]
        assert answers[3] == b"t1 NO [LIMIT] Too many sessions open for this account\r\n"
        clients[0].command("LOGOUT")
        clients[0].close()
        again = RawImap(server.address("imaps"), tls=True)
        clients.append(again)
        again.line()
        assert again.login().startswith(b"t1 OK")
    finally:
        for client in clients:
            client.close()


def test_connections_per_address(server: ServerThread) -> None:
    clients = []
    try:
        for _ in range(6):
            clients.append(RawImap(server.address("imap"), source="127.0.0.44"))
            assert clients[-1].line().startswith(b"* OK")
        extra = RawImap(server.address("imap"), source="127.0.0.44")
        clients.append(extra)
        assert extra.line() == b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
    finally:
        for client in clients:
            client.close()


def test_a_fast_client_is_slowed_not_refused(server: ServerThread) -> None:
    with raw(server) as client:
        assert client.login().startswith(b"t1 OK")  # logged in: login_timeout no longer applies
        client.send(b"".join(b"n%d NOOP\r\n" % n for n in range(100)))  # five times the pace
        answers = [client.until(f"n{n}")[1] for n in range(100)]
        assert all(b" OK " in answer for answer in answers)


def _imap_sessions(server: ServerThread) -> list[ImapSession]:
    assert server.server is not None
    return [s for s in server.server.listeners.sessions.values() if isinstance(s, ImapSession)]


def test_a_client_that_never_reads_cannot_grow_the_servers_buffers(server: ServerThread) -> None:
    with raw(server) as seeder:
        seeder.login()
        seeder.command("CREATE Big")
        data = message("big", body="z" * 60_000 + "\r\n")
        seeder.send(b"a APPEND Big {%d+}\r\n" % len(data) + data + b"\r\n")
        seeder.until("a")
    before = {id(s) for s in _imap_sessions(server)}
    sock = socket.create_connection(server.address("imaps"), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tls = client_tls_context().wrap_socket(sock, server_hostname="localhost")
    try:
        tls.recv(65536)  # greeting
        tls.sendall(b'l LOGIN "alice@example.test" "correct horse battery staple"\r\nx SELECT Big\r\n')
        tls.setblocking(False)
        command = b"f FETCH 1 BODY.PEEK[]\r\n" * 200  # each answer is 60 KB: 12 MB asked per write
        stalled = False
        for _ in range(10_000):
            try:
                tls.send(command)
            except (ssl.SSLWantWriteError, BlockingIOError):
                _, writable, _ = select.select([], [tls], [], 5.0)
                if not writable:  # the server no longer takes our commands
                    stalled = True
                    break
        assert stalled
        sessions = [s for s in _imap_sessions(server) if id(s) not in before]
        assert sessions, "the flooding session is gone"
        for session in sessions:
            held = server.run(_buffered(session))
            assert held < 1024 * 1024, held  # the TLS transport's high-water mark and a response, not 12 MB
    finally:
        tls.close()


async def _buffered(session: ImapSession) -> int:
    return session.channel.write_buffer_size() + session._held_size + session.conn.buffered


def test_login_timeout_is_not_renewed_by_commands(server: ServerThread) -> None:
    with raw(server) as client:
        lines = []
        while True:  # NOOPs keep coming; the server says BYE once login_timeout is over all the same
            client.send(b"n NOOP\r\n")
            line = client.line()
            lines.append(line)
            if line.startswith(b"* BYE"):
                break
            if line.startswith(b"n OK"):
                _wait_readable(client, 0.5)
        assert lines[-1] == b"* BYE Autologout; idle for too long\r\n"
        assert client.closed_by_server()


def _wait_readable(client: RawImap, seconds: float) -> None:
    """Pace the client: wait up to ``seconds`` for the server to say something unasked."""
    select.select([client.sock], [], [], seconds)


def test_commands_in_the_wrong_state_get_bad(server: ServerThread) -> None:
    with raw(server) as client:
        for text in ("SELECT INBOX", "FETCH 1 FLAGS", "IDLE", "ENABLE CONDSTORE"):
            _, done = client.command(text)
            assert b" BAD " in done or b" NO " in done, (text, done)
        client.login()
        for text in ("FETCH 1 FLAGS", "EXPUNGE", "CLOSE", "LOGIN a b"):
            _, done = client.command(text)
            assert b" BAD " in done, (text, done)
