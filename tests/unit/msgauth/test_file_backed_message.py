"""DKIM on messages kept on disk (issue 11, point 12): the hook sees the head, and only DKIM/ARC
verification and DKIM signing read the whole message, in the message-authentication threads."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardmail.config.schema import Config
from hardmail.core.address import parse_mailbox
from hardmail.core.clock import FakeClock
from hardmail.delivery.content import MessageContent
from hardmail.delivery.durable import FileRange
from hardmail.msgauth import workers
from hardmail.msgauth.dkim import sign, verify
from hardmail.msgauth.dkim_keys import DomainKeys
from hardmail.msgauth.dns import StaticResolver
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageFacts, SessionFacts
from hardmail.server.msgauth_hook import MsgAuthHook, build_msgauth_hook
from support.msgauth_dns import txt_value

MX_FACTS = SessionFacts("s1", "smtp", "192.0.2.10", 40000, "client.example", None, None)
SUBMISSION_FACTS = SessionFacts("s2", "submission", "192.0.2.10", 40001, "client.example", None,
                                "alice@example.test")
BODY = b"a line of a big message body, kept on disk while it is checked\r\n" * 20_000  # 1.3 MB


@dataclass(frozen=True)
class Watched:
    """A file-backed message that records which thread read it."""

    content: MessageContent
    readers: list[str] = field(default_factory=list)
    held: list[int] = field(default_factory=list)  # bytes of the whole-message budget held at each read

    @property
    def head(self) -> bytes:
        return self.content.head

    @property
    def size(self) -> int:
        return self.content.size

    def read(self) -> bytes:
        self.readers.append(threading.current_thread().name)
        self.held.append(sum(budget.used for budget in workers._BUDGETS.values()))
        return self.content.read()


def on_disk(tmp_path: Path, message: bytes) -> MessageContent:
    end = message.index(b"\r\n\r\n") + 4
    path = tmp_path / "incoming-copy"
    path.write_bytes(message)
    return MessageContent(message[:end], FileRange(str(path), end, len(message) - end))


def hook_for(tmp_path: Path, zone: dict[tuple[str, str], Any]) -> MsgAuthHook:
    raw: dict[str, Any] = {"server": {"hostname": "mx.example.test", "data_dir": str(tmp_path / "data")},
                           "inbound": {"authserv_id": "mx.example.test"}, "antispam": {"enabled": False}}
    return build_msgauth_hook(Config.model_validate(raw), None, FakeClock(), StaticResolver(zone))  # type: ignore[arg-type]


def facts_of(message: Watched) -> MessageFacts:
    return MessageFacts("ceo@sender.example", ("bob@example.test",), ("bob@example.test",), (),
                        message, message.content.size)  # type: ignore[arg-type]


def keys_and_zone(root: Path, domain: str) -> tuple[DomainKeys, dict[tuple[str, str], Any]]:
    keys = DomainKeys(root, domain)
    keys.generate(1_800_000_000.0)
    zone: dict[tuple[str, str], Any] = {(r.name(domain), "TXT"): [txt_value(r.txt)] for r in keys.public_records(
        keys.generations()[0])}
    return keys, zone


async def test_a_signed_message_on_disk_verifies_reading_it_in_a_worker_thread(tmp_path: Path) -> None:
    keys, zone = keys_and_zone(tmp_path / "sender", "sender.example")
    zone[("_dmarc.sender.example", "TXT")] = ['"v=DMARC1; p=reject"']
    plain = b"From: <ceo@sender.example>\r\nTo: <bob@example.test>\r\nSubject: big\r\n\r\n" + BODY
    message = Watched(on_disk(tmp_path, await sign(plain, keys.signing_keys()) + plain))
    hook = hook_for(tmp_path, zone)
    await hook.on_connect(MX_FACTS)
    await hook.on_mail(MX_FACTS, parse_mailbox("ceo@sender.example"), MailParams())
    decision = await hook.on_message(MX_FACTS, facts_of(message))
    assert decision is not None and decision.reply is None
    assert b"dkim=pass header.d=sender.example" in decision.headers
    assert message.readers and all(name.startswith("hardmail-msgauth") for name in message.readers)
    assert message.held and all(held >= message.size for held in message.held)  # read within the budget
    hook.close()


async def test_an_unsigned_message_on_disk_is_never_read_whole(tmp_path: Path) -> None:
    message = Watched(on_disk(tmp_path, b"From: <x@nodmarc.example>\r\nSubject: big\r\n\r\n" + BODY))
    hook = hook_for(tmp_path, {})
    await hook.on_connect(MX_FACTS)
    await hook.on_mail(MX_FACTS, parse_mailbox("x@nodmarc.example"), MailParams())
    decision = await hook.on_message(MX_FACTS, facts_of(message))
    assert decision is not None and b"dkim=none" in decision.headers
    assert message.readers == []  # the header checks needed only the head
    hook.close()


async def test_a_submitted_message_on_disk_is_signed_over_every_byte(tmp_path: Path) -> None:
    hook = hook_for(tmp_path, {})
    _keys, zone = keys_and_zone(tmp_path / "data", "example.test")  # the server's own keys: it signs
    plain = b"From: <alice@example.test>\r\nTo: <bob@example.test>\r\nSubject: big\r\n\r\n" + BODY
    message = Watched(on_disk(tmp_path, plain))
    decision = await hook.on_message(SUBMISSION_FACTS, facts_of(message))
    assert decision is not None and decision.headers.count(b"DKIM-Signature:") == 2
    assert message.readers and all(name.startswith("hardmail-msgauth") for name in message.readers)
    assert message.held and all(held >= message.size for held in message.held)
    results = await verify(decision.headers + plain, StaticResolver(zone))
    assert [r.result for r in results] == ["pass", "pass"]
    hook.close()


async def test_whole_message_reads_share_a_byte_budget_in_order(monkeypatch: Any) -> None:
    """Eight hostile 50 MB messages with a DKIM-Signature would otherwise be read whole by every
    thread of the pool at once: reads wait for their size of WHOLE_MESSAGE_BYTES, in order, and a
    cancelled waiter gives its place up."""
    import asyncio

    monkeypatch.setattr(workers, "WHOLE_MESSAGE_BYTES", 100)
    order: list[str] = []
    gate = asyncio.Event()

    async def reader(name: str, size: int) -> None:
        async with workers.whole_message(size):
            order.append(name)
            await gate.wait()

    first = asyncio.create_task(reader("a", 60))
    second = asyncio.create_task(reader("b", 60))
    cancelled = asyncio.create_task(reader("x", 10))
    third = asyncio.create_task(reader("c", 500))  # bigger than the budget: runs alone
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["a"]  # b waits (60 + 60 > 100), the others wait behind it
    cancelled.cancel()
    gate.set()
    await asyncio.gather(first, second, third, return_exceptions=True)
    assert order == ["a", "b", "c"]
    assert sum(budget.used for budget in workers._BUDGETS.values()) == 0
