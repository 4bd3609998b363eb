"""The ``smtp.accept`` log line names the folder the local copies went to (INBOX, or Junk when a
check filed the message there), so that mail filed to Junk can be found from the log."""

from __future__ import annotations

import json
import logging
import smtplib

import pytest

from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from support.live import BOB, ServerThread


class JunkHook(SessionHook):
    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        return MessageDecision(folder="Junk") if b"SPAMMY" in message.head else None


def _accept_events(text: str) -> list[dict[str, object]]:
    events = [json.loads(line[line.index("{"):]) for line in text.splitlines() if '"smtp.accept"' in line]
    return [event for event in events if event.get("event") == "smtp.accept"]


def test_accept_line_names_inbox_or_junk(live_server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    assert live_server.server is not None
    live_server.server.context.hooks.append(JunkHook())
    host, port = live_server.address("smtp")
    with smtplib.SMTP(host, port, timeout=30) as client:
        client.sendmail("a@elsewhere.example", [BOB], b"Subject: hello\r\n\r\nhi\r\n")
        client.sendmail("a@elsewhere.example", [BOB], b"Subject: SPAMMY\r\n\r\nbuy\r\n")
    events = _accept_events(caplog.text)
    assert [(event["local"], event["folder"]) for event in events] == [(1, "INBOX"), (1, "Junk")]
    junk = live_server.server.context.acceptor.maildir.mailbox_path(BOB) / ".Junk" / "new"
    assert len(list(junk.iterdir())) == 1 and len(live_server.messages(BOB)) == 1
