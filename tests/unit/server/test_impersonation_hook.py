"""The impersonation hook on a real SQLite store: who gets warnings, the forged field removed,
the directory re-read after its time to live, the body changed for a message kept in memory and
for one in its incoming file."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from hardmail.config.schema import Config
from hardmail.core.clock import FakeClock
from hardmail.delivery.content import MessageContent
from hardmail.delivery.durable import FileRange
from hardmail.server.hooks import MessageFacts, SessionFacts
from hardmail.server.impersonation_hook import PREPEND_WINDOW, ImpersonationHook, with_warning
from hardmail.store import open_store
from hardmail.store.ports import Store

HEAD = (b"Received: from x\r\nFrom: \"Alice Liddell\" <alice@examp1e.org>\r\nX-Hardmail-Warning: none, all is fine\r\n"
        b"Subject: invoice\r\n\r\n")
BODY = b"Please pay.\r\n"


def config(tmp_path: Path, **impersonation: Any) -> Config:
    return Config.model_validate({"server": {"data_dir": str(tmp_path / "data")},
                                  "relay": {"trusted_networks": ["10.9.0.0/16"]},
                                  "impersonation": impersonation})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}", clock=FakeClock())
    await opened.migrate()
    await opened.add_domain("example.org")
    await opened.add_account("alice@example.org", "unused-hash", "Alice Liddell")
    try:
        yield opened
    finally:
        await opened.close()


def session(listener: str = "smtp", peer: str = "192.0.2.7", account: str | None = None) -> SessionFacts:
    return SessionFacts("s1", listener, peer, 2525, "client.test", None, account)


def message(content: MessageContent, mailboxes: tuple[str, ...] = ("alice@example.org",)) -> MessageFacts:
    return MessageFacts("x@examp1e.org", mailboxes, mailboxes, (), content, content.size)


async def test_mail_from_outside_gets_warnings_and_loses_the_forged_field(tmp_path: Path, store: Store) -> None:
    hook = ImpersonationHook(config(tmp_path, prepend_warning=True), store, FakeClock())
    decision = await hook.on_message(session(), message(MessageContent(HEAD, body=BODY)))
    assert decision is not None
    assert decision.local_headers.count(b"X-Hardmail-Warning: ") == 2
    assert b"looks like your domain example.org" in decision.local_headers.replace(b"\r\n ", b" ")
    assert all(len(line) <= 78 for line in decision.local_headers.split(b"\r\n"))
    assert decision.drop_headers == (2,)
    assert decision.content is not None
    body = decision.content.body
    assert body.startswith(b"WARNING: The sender's name matches") and body.endswith(BODY)


@pytest.mark.parametrize("facts", [session(account="alice@example.org"), session("submission", account="bob@x"),
                                   session(peer="10.9.1.2")], ids=["authenticated", "submission", "trusted"])
async def test_no_warning_for_our_own_clients(tmp_path: Path, store: Store, facts: SessionFacts) -> None:
    hook = ImpersonationHook(config(tmp_path), store, FakeClock())
    assert await hook.on_message(facts, message(MessageContent(HEAD, body=BODY))) is None


async def test_no_warning_without_local_recipients_or_when_off(tmp_path: Path, store: Store) -> None:
    hook = ImpersonationHook(config(tmp_path), store, FakeClock())
    assert await hook.on_message(session(), message(MessageContent(HEAD, body=BODY), mailboxes=())) is None
    off = ImpersonationHook(config(tmp_path, enabled=False), store, FakeClock())
    assert await off.on_message(session(), message(MessageContent(HEAD, body=BODY))) is None


async def test_allowed_domains_and_senders_from_the_config(tmp_path: Path, store: Store) -> None:
    hook = ImpersonationHook(config(tmp_path, allow_domains=["examp1e.org"], allow_senders=["boss@partner.test"]),
                             store, FakeClock())
    decision = await hook.on_message(session(), message(MessageContent(HEAD, body=BODY)))
    assert decision is not None and decision.local_headers == b"" and decision.drop_headers == (2,)
    boss = b'From: "Alice Liddell" <BOSS@partner.test>\r\n\r\n'
    assert await hook.on_message(session(), message(MessageContent(boss))) is None
    other = b'From: "Alice Liddell" <clerk@partner.test>\r\n\r\n'
    decision = await hook.on_message(session(), message(MessageContent(other)))
    assert decision is not None and b"matches a person in your organisation" in decision.local_headers


@pytest.mark.parametrize(("key", "value"), [("allow_domains", ["a b.test"]), ("allow_domains", ["x@y.test"]),
                                            ("allow_senders", ["partner.test"]), ("allow_senders", ["@y.test"])])
def test_allowlists_must_be_domains_and_addresses(tmp_path: Path, key: str, value: list[str]) -> None:
    with pytest.raises(ValueError, match="not a"):
        config(tmp_path, **{key: value})


async def test_normal_mail_only_loses_the_forged_field(tmp_path: Path, store: Store) -> None:
    hook = ImpersonationHook(config(tmp_path, prepend_warning=True), store, FakeClock())
    normal = HEAD.replace(b'"Alice Liddell" <alice@examp1e.org>', b"Bob Jones <bob@partner.test>")
    decision = await hook.on_message(session(), message(MessageContent(normal, body=BODY)))
    assert decision is not None and decision.local_headers == b"" and decision.content is None
    assert decision.drop_headers == (2,)
    clean = normal.replace(b"X-Hardmail-Warning: none, all is fine\r\n", b"")
    assert await hook.on_message(session(), message(MessageContent(clean, body=BODY))) is None


async def test_directory_is_read_again_after_its_time_to_live(tmp_path: Path, store: Store) -> None:
    clock = FakeClock()
    hook = ImpersonationHook(config(tmp_path), store, clock, ttl=60)
    head = b"From: Carol Jones <carol@partner.test>\r\n\r\n"
    assert await hook.on_message(session(), message(MessageContent(head))) is None
    await store.add_account("carol@example.org", "unused-hash", "Carol Jones")
    clock.advance(59)
    assert await hook.on_message(session(), message(MessageContent(head))) is None
    clock.advance(2)
    decision = await hook.on_message(session(), message(MessageContent(head)))
    assert decision is not None and b"matches a person in your organisation" in decision.local_headers


class BrokenStore:
    async def list_domains(self) -> list[Any]:
        raise OSError("database gone")


async def test_a_store_error_fails_open(tmp_path: Path) -> None:
    hook = ImpersonationHook(config(tmp_path), cast(Store, BrokenStore()), FakeClock())
    decision = await hook.on_message(session(), message(MessageContent(HEAD, body=BODY)))
    assert decision is not None and decision.local_headers == b"" and decision.drop_headers == (2,)


def _file_content(tmp_path: Path, body: bytes) -> MessageContent:
    path = tmp_path / "incoming"
    path.write_bytes(HEAD + body)
    return MessageContent(HEAD, FileRange(str(path), len(HEAD), len(body)))


def _stored(content: MessageContent) -> bytes:
    return b"".join(p if isinstance(p, bytes) else
                    Path(p.path).read_bytes()[p.offset:p.offset + p.length] for p in content.parts())


def test_body_change_of_a_message_in_its_file_reads_only_its_start(tmp_path: Path) -> None:
    body = b"Please pay.\r\n" + (b"x" * 76 + b"\r\n") * (3 * PREPEND_WINDOW // 78)
    changed = with_warning(_file_content(tmp_path, body), ["WARNING: it is a trap.", ""])
    assert changed is not None and changed.rest is not None
    assert len(changed.body) < PREPEND_WINDOW + 100  # in memory: the start only
    assert changed.rest.offset == len(HEAD) + PREPEND_WINDOW
    stored = _stored(changed)
    assert stored == HEAD + b"WARNING: it is a trap.\r\n\r\n" + body
    assert changed.read() == stored and changed.size == len(stored)
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert str(parsed.get_content()).replace("\r\n", "\n").startswith("WARNING: it is a trap.\n\nPlease pay.")


def test_body_change_of_a_small_file_message(tmp_path: Path) -> None:
    changed = with_warning(_file_content(tmp_path, BODY), ["WARNING: it is a trap.", ""])
    assert changed is not None and changed.rest is None
    assert _stored(changed) == HEAD + b"WARNING: it is a trap.\r\n\r\n" + BODY


def test_text_part_after_the_window_keeps_the_body(tmp_path: Path) -> None:
    head = HEAD.replace(b"Subject: invoice\r\n", b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n")
    body = b"--b\r\nContent-Type: text/plain\r\n" + b"X-Pad: " + b"p" * PREPEND_WINDOW + b"\r\n\r\ntext\r\n--b--\r\n"
    path = tmp_path / "incoming"
    path.write_bytes(head + body)
    content = MessageContent(head, FileRange(str(path), len(head), len(body)))
    assert with_warning(content, ["WARNING: it is a trap.", ""]) is None
