"""Session hooks: a check can refuse at connect, at MAIL, at RCPT and at the end of data, and add headers."""

from __future__ import annotations

import asyncio
import socket

from hardmail.core.address import Address
from hardmail.core.replies import Reply
from hardmail.delivery.recipients import Resolution
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from support.live import BOB, RawClient, ServerThread

REFUSED = Reply(554, "5.7.1", "refused by test hook")


class ScriptedHook(SessionHook):
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def on_connect(self, facts: SessionFacts) -> Reply | None:
        self.calls.append(f"connect {facts.peer_ip}")
        return REFUSED if facts.peer_ip == "127.0.0.9" else None

    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        return REFUSED if sender is not None and sender.local == "spammer" else None

    async def on_rcpt(self, facts: SessionFacts, sender: str, recipient: Address,
                      resolution: Resolution) -> Reply | None:
        return Reply(451, "4.7.1", "try later (test)") if recipient.local == "sales" else None

    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        if b"REJECT-ME" in await asyncio.to_thread(message.content.read):
            return MessageDecision(reply=REFUSED)
        return MessageDecision(headers=b"X-Checked: yes\r\n")

    async def on_disconnect(self, facts: SessionFacts) -> None:
        self.calls.append("disconnect")


def _client_from(server: ServerThread, source: str) -> RawClient:
    client = RawClient.__new__(RawClient)
    client.sock = socket.create_connection(server.address("smtp"), timeout=20, source_address=(source, 0))
    client.buffer = b""
    return client


def test_hooks_refuse_and_add_headers(live_server: ServerThread) -> None:
    hook = ScriptedHook()
    assert live_server.server is not None
    live_server.server.context.hooks.append(hook)

    refused = _client_from(live_server, "127.0.0.9")
    code, lines = refused.read_reply()
    assert (code, lines[0]) == (554, "5.7.1 refused by test hook")
    assert refused.closed_by_server()

    client = _client_from(live_server, "127.0.0.1")
    client.read_reply()
    client.command("EHLO client.example")
    assert client.command("MAIL FROM:<spammer@elsewhere.example>")[0] == 554
    assert client.command("MAIL FROM:<friend@elsewhere.example>")[0] == 250
    assert client.command("RCPT TO:<sales@example.test>")[0] == 451
    assert client.command(f"RCPT TO:<{BOB}>")[0] == 250
    client.command("DATA")
    assert client.command("Subject: one\r\n\r\nREJECT-ME\r\n.")[0] == 554
    client.command("MAIL FROM:<friend@elsewhere.example>")
    client.command(f"RCPT TO:<{BOB}>")
    client.command("DATA")
    assert client.command("Subject: two\r\n\r\nfine\r\n.")[0] == 250
    client.command("QUIT")
    client.close()
    [stored] = live_server.messages(BOB)
    assert b"\r\nX-Checked: yes\r\nSubject: two\r\n" in stored
    assert "connect 127.0.0.9" in hook.calls
