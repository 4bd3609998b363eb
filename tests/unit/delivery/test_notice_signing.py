"""Notices that leave through the queue are DKIM-signed when a signer is set; local ones are not touched."""

from __future__ import annotations

from typing import Any

from hardmail.core.clock import FakeClock
from hardmail.delivery.dsn import RecipientReport
from hardmail.delivery.notices import NoticeSender
from hardmail.store.ports_queue import QueueEntry

SIGNATURE = b"DKIM-Signature: v=1; d=example.org; s=test; b=xyz\r\n"


class CapturingQueue:
    def __init__(self) -> None:
        self.enqueued: list[bytes] = []

    async def enqueue(self, sender: str, recipients: list[str], message: bytes, **_: Any) -> str:
        self.enqueued.append(message)
        return "QUEUEID"


async def _sign(message: bytes) -> bytes:
    assert message.startswith(b"From: ") or b"\r\nFrom: " in message
    return SIGNATURE


def _entry() -> QueueEntry:
    return QueueEntry(queue_id="Q1", sender="alice@example.org", recipients=(), size=10,
                      origin_account="alice@example.org", created_at=0.0, next_attempt_at=0.0)


async def test_remote_notice_is_signed() -> None:
    queue = CapturingQueue()
    sender = NoticeSender(queue, "mail.example.org", FakeClock())  # type: ignore[arg-type]
    sender.sign = _sign
    report = RecipientReport(address="bob@elsewhere.example", action="failed", status="5.1.1")
    assert await sender.send(_entry(), [report], b"Subject: x\r\n\r\nbody\r\n") == "QUEUEID"
    [message] = queue.enqueued
    assert message.startswith(SIGNATURE)


async def test_without_a_signer_the_notice_is_unchanged() -> None:
    queue = CapturingQueue()
    sender = NoticeSender(queue, "mail.example.org", FakeClock())  # type: ignore[arg-type]
    report = RecipientReport(address="bob@elsewhere.example", action="failed", status="5.1.1")
    await sender.send(_entry(), [report], b"Subject: x\r\n\r\nbody\r\n")
    assert not queue.enqueued[0].startswith(b"DKIM-Signature")
