"""RCPT on the MX port does not tell a disabled mailbox from an unknown one (over real sockets)."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.live import (
    ALICE,
    ALICE_PASSWORD,
    CAROL_DISABLED,
    RawClient,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

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


def submission_rcpt_replies(server: ServerThread, recipients: list[str]) -> list[tuple[int, bytes]]:
    """RCPT replies to an authenticated user on the submission port (STARTTLS, then AUTH)."""
    with smtplib.SMTP(*server.address("submission"), timeout=20) as client:
        client.ehlo("client.example")
        client.starttls(context=client_tls_context())
        client.ehlo("client.example")
        client.login(ALICE, ALICE_PASSWORD)
        replies = []
        for recipient in recipients:
            assert client.mail(ALICE)[0] == 250
            replies.append(client.rcpt(recipient))
            assert client.rset()[0] == 250
        return replies


def test_on_submission_too_a_disabled_mailbox_answers_like_an_unknown_one(live_server: ServerThread) -> None:
    unknown, disabled = submission_rcpt_replies(live_server, [UNKNOWN, CAROL_DISABLED])
    assert unknown == disabled == (550, b"5.1.1 Recipient address rejected: user unknown")


def test_vrfy_says_the_same_for_a_disabled_an_unknown_and_an_existing_mailbox(live_server: ServerThread) -> None:
    client = RawClient(live_server.address("smtp"))
    try:
        client.read_reply()
        client.command("EHLO client.example")
        replies = []
        for address in (UNKNOWN, CAROL_DISABLED, ALICE):
            client.send(f"VRFY <{address}>\r\n".encode())
            replies.append(client.read_line())
        assert replies[0] == replies[1] == replies[2]
    finally:
        client.close()


def test_plus_tag_and_alias_to_a_disabled_mailbox_answer_like_unknown_ones(live_server: ServerThread) -> None:
    live_server.run(live_server.admin.add_alias("team@example.test", [CAROL_DISABLED]))
    replies = rcpt_replies(live_server, ["carol+tag@example.test", "nobody+tag@example.test",
                                         "team@example.test", UNKNOWN])
    assert len(set(replies)) == 1, replies
