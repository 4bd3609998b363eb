"""RCPT on the MX port does not tell a disabled mailbox from an unknown one (over real sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.live import ALICE, CAROL_DISABLED, RawClient, ServerThread, running_server, server_config

UNKNOWN = "nobody-here@example.test"


def rcpt_replies(server: ServerThread, recipients: list[str]) -> list[bytes]:
    """The raw bytes of each RCPT reply, one transaction per recipient."""
    client = RawClient(server.address("smtp"))
    try:
        client.read_reply()
        client.command("EHLO client.example")
        replies = []
        for recipient in recipients:
            assert client.command("MAIL FROM:<someone@elsewhere.example>")[0] == 250
            client.send(f"RCPT TO:<{recipient}>\r\n".encode())
            replies.append(client.read_line() + b"\r\n")
            assert client.command("RSET")[0] == 250
        return replies
    finally:
        client.close()


def rcpt_events(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, Any]]:
    found = [json.loads(r.getMessage()) for r in caplog.records if '"smtp.rcpt"' in r.getMessage()]
    return {event["recipient"]: event for event in found}


def test_disabled_mailbox_answers_byte_for_byte_like_an_unknown_one(
        live_server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    unknown, disabled = rcpt_replies(live_server, [UNKNOWN, CAROL_DISABLED])
    assert unknown == disabled == b"550 5.1.1 Recipient address rejected: user unknown\r\n"
    events = rcpt_events(caplog)
    shape = {key: value for key, value in events[UNKNOWN].items() if key not in ("ts", "recipient", "reason")}
    assert {key: value for key, value in events[CAROL_DISABLED].items()
            if key not in ("ts", "recipient", "reason")} == shape
    assert shape["kind"] == "unknown"
    assert (events[UNKNOWN]["reason"], events[CAROL_DISABLED]["reason"]) == (
        "no such local recipient", "recipient account disabled")  # the real reason, in the log only


@pytest.fixture
def revealing_server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data", smtp={"reveal_disabled_recipients": True})) as server:
        yield server


def test_revealing_is_a_setting(revealing_server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    unknown, disabled = rcpt_replies(revealing_server, [UNKNOWN, CAROL_DISABLED])
    assert unknown.startswith(b"550 5.1.1 ")
    assert disabled == b"550 5.2.1 Recipient mailbox disabled\r\n"
    assert rcpt_events(caplog)[CAROL_DISABLED]["kind"] == "disabled"


def test_with_a_catch_all_a_disabled_mailbox_is_taken_like_an_unknown_one(live_server: ServerThread) -> None:
    live_server.run(live_server.admin.add_alias("@example.test", [ALICE]))
    unknown, disabled = rcpt_replies(live_server, [UNKNOWN, CAROL_DISABLED])
    assert unknown == disabled == b"250 2.1.5 Recipient OK\r\n"
