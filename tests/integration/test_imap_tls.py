"""Implicit TLS when the client's ClientHello reached the server before the session started TLS.

uvloop delivers data to a protocol that paused reading in ``connection_made`` (the pause is not in
effect yet), so on a busy server the ClientHello of an IMAPS client is often read into the channel
while the connect checks run; dropping it (as STARTTLS must drop clear-text bytes) left the
handshake waiting until its timeout. A hook here makes that happen on every connection, on any
event loop: it reads the client's first bytes during the connect checks and puts them back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.core.replies import Reply
from hardmail.server.hooks import SessionFacts, SessionHook
from hardmail.server.imap_session import ImapSession
from support.imap import RawImap
from support.live import ServerThread, running_server, server_config


class ReadsTheHelloFirst(SessionHook):
    def __init__(self, server: ServerThread) -> None:
        self.server = server

    async def on_connect(self, facts: SessionFacts) -> Reply | None:
        assert self.server.server is not None
        sessions = self.server.server.listeners.sessions.values()
        session = next((s for s in sessions if isinstance(s, ImapSession) and s.id == facts.session_id), None)
        if session is not None and session.kind == "imaps":
            session.channel.hold_reading(False)  # what uvloop does: the first bytes come in regardless
            first = await session.channel.read()
            session.channel.hold_reading(True)
            session.channel.unread(first)
        return None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as live:
        assert live.server is not None
        live.server.context.hooks.insert(0, ReadsTheHelloFirst(live))
        yield live


def test_imaps_handshake_with_the_client_hello_already_read(server: ServerThread) -> None:
    client = RawImap(server.address("imaps"), tls=True)
    try:
        assert client.line().startswith(b"* OK [CAPABILITY IMAP4rev2")
        assert client.login().startswith(b"t1 OK")
    finally:
        client.close()
