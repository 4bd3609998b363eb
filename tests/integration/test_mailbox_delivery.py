"""SMTP delivery into the mailbox store over real sockets: UIDs in delivery order (INBOX and Junk),
the special-use folders of an account set up at its first delivery, and the quota refusals
(452 4.2.2, or 552 5.2.2 with over_quota = "bounce") at RCPT, counting MAIL FROM SIZE=, and at the
end of DATA."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.mailbox import MailboxStore, Subscription
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from support.live import ALICE, BOB, RawClient, ServerThread, running_server, server_config

SENDER = "someone@elsewhere.example"


def _mailboxes(server: ServerThread) -> MailboxStore:
    assert server.server is not None and server.server.context.mailboxes is not None
    return server.server.context.mailboxes


def _message(subject: str, body_size: int = 10) -> bytes:
    body = (b"x" * 78 + b"\r\n") * (body_size // 80) + b"x" * (body_size % 80)  # lines of normal length
    return f"From: <{SENDER}>\r\nSubject: {subject}\r\n\r\n".encode() + body + b"\r\n"


def _send(server: ServerThread, recipients: list[str], message: bytes) -> None:
    with smtplib.SMTP(*server.address("smtp"), timeout=30) as client:
        client.sendmail(SENDER, recipients, message)


def _subjects(server: ServerThread, account: str, folder: str) -> list[tuple[int, str]]:
    mailboxes = _mailboxes(server)
    snapshot = server.run(mailboxes.snapshot(account, folder))
    found = []
    for record in snapshot.messages:
        data = server.run(mailboxes.read_message(account, folder, record.uid))
        assert data is not None
        subject = next(line for line in data.split(b"\r\n") if line.startswith(b"Subject: "))
        found.append((record.uid, subject[9:].decode()))
    return found


def test_delivered_messages_get_uids_in_delivery_order(live_server: ServerThread) -> None:
    for number in range(1, 4):
        _send(live_server, [ALICE], _message(f"number {number}"))
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "number 1"), (2, "number 2"), (3, "number 3")]
    info = live_server.run(_mailboxes(live_server).folder(ALICE, "INBOX"))
    assert info is not None and (info.messages, info.uidnext) == (3, 4)


def test_first_delivery_sets_up_the_special_use_folders(live_server: ServerThread) -> None:
    _send(live_server, [BOB], _message("hello"))
    folders = live_server.run(_mailboxes(live_server).list_folders(BOB))
    uses = {info.name: info.special_use for info in folders}
    assert uses == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                    "Junk": "\\Junk", "Archive": "\\Archive"}
    assert all(info.subscribed for info in folders)


def test_an_alias_delivers_to_each_mailbox_with_its_own_uid(live_server: ServerThread) -> None:
    _send(live_server, [ALICE], _message("first"))
    _send(live_server, ["sales@example.test"], _message("to both"))
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "first"), (2, "to both")]
    assert _subjects(live_server, BOB, "INBOX") == [(1, "to both")]


class JunkHook(SessionHook):
    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        return MessageDecision(folder="Junk") if b"SPAMMY" in message.head else None


def test_mail_filed_to_junk_is_indexed_there(live_server: ServerThread) -> None:
    assert live_server.server is not None
    live_server.server.context.hooks.append(JunkHook())
    _send(live_server, [ALICE], _message("SPAMMY one"))
    _send(live_server, [ALICE], _message("fine"))
    _send(live_server, [ALICE], _message("SPAMMY two"))
    assert _subjects(live_server, ALICE, "Junk") == [(1, "SPAMMY one"), (2, "SPAMMY two")]
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "fine")]


# quota


def _limit(server: ServerThread, account: str, storage: int | None, messages: int | None = None) -> None:
    mailboxes = _mailboxes(server)
    server.run(mailboxes.ensure_account(account))
    server.run(mailboxes.set_quota(account, storage, messages))


def _transaction(server: ServerThread, mail_from: str, recipients: list[str]) -> tuple[RawClient, list[int]]:
    client = RawClient(server.address("smtp"))
    client.read_reply()
    client.command("EHLO client.example")
    code, _ = client.command(mail_from)
    assert code == 250
    return client, [client.command(f"RCPT TO:<{rcpt}>")[0] for rcpt in recipients]


def _data(client: RawClient, message: bytes) -> tuple[int, list[str]]:
    code, _ = client.command("DATA")
    assert code == 354
    client.send(message + b".\r\n")
    return client.read_reply()


def test_full_mailbox_refuses_at_rcpt_with_452_4_2_2(live_server: ServerThread) -> None:
    _limit(live_server, ALICE, 100_000, 1)
    _send(live_server, [ALICE], _message("fills the count"))
    client = RawClient(live_server.address("smtp"))
    try:
        client.read_reply()
        client.command("EHLO client.example")
        client.command(f"MAIL FROM:<{SENDER}>")
        code, lines = client.command(f"RCPT TO:<{ALICE}>")
        assert code == 452 and lines[0].startswith("4.2.2 Mailbox full")
        assert client.command(f"RCPT TO:<{BOB}>")[0] == 250  # the others of the transaction still get it
        assert _data(client, _message("for bob"))[0] == 250
    finally:
        client.close()
    assert [subject for _, subject in _subjects(live_server, BOB, "INBOX")] == ["for bob"]
    assert len(_subjects(live_server, ALICE, "INBOX")) == 1


def test_declared_size_counts_at_rcpt(live_server: ServerThread) -> None:
    _limit(live_server, ALICE, 5000)
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}> SIZE=6000", [ALICE])
    client.close()
    assert codes == [452]
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}> SIZE=4000", [ALICE])
    try:
        assert codes == [250]
        assert _data(client, _message("fits", 3000))[0] == 250
    finally:
        client.close()
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}> SIZE=3000", [ALICE])  # 3 kB used, 2 kB left
    client.close()
    assert codes == [452]


def test_undeclared_size_is_refused_at_the_end_of_data(live_server: ServerThread) -> None:
    _limit(live_server, ALICE, 5000)
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}>", [ALICE])
    try:
        assert codes == [250]  # no SIZE=: the mailbox has room for something
        code, lines = _data(client, _message("too big", 8000))
        assert code == 452 and lines[0].startswith("4.2.2")
    finally:
        client.close()
    assert _subjects(live_server, ALICE, "INBOX") == []


@pytest.fixture
def bouncing_server(tmp_path: Path) -> Iterator[ServerThread]:
    config = server_config(tmp_path / "data", mailbox={"over_quota": "bounce"})
    with running_server(config) as server:
        yield server


def test_bounce_setting_refuses_with_552_5_2_2(bouncing_server: ServerThread) -> None:
    _limit(bouncing_server, ALICE, 3000)
    client, codes = _transaction(bouncing_server, f"MAIL FROM:<{SENDER}> SIZE=4000", [ALICE])
    client.close()
    assert codes == [552]
    client, codes = _transaction(bouncing_server, f"MAIL FROM:<{SENDER}>", [ALICE])
    try:
        assert codes == [250]
        code, lines = _data(client, _message("too big", 4000))
        assert code == 552 and lines[0].startswith("5.2.2 Mailbox full")
    finally:
        client.close()


def test_a_mailbox_full_at_delivery_is_bounced_the_others_get_the_message(bouncing_server: ServerThread) -> None:
    _limit(bouncing_server, ALICE, 3000)
    _send(bouncing_server, ["sales@example.test"], _message("big", 4000))  # alice and bob
    assert [subject for _, subject in _subjects(bouncing_server, BOB, "INBOX")] == ["big"]
    assert _subjects(bouncing_server, ALICE, "INBOX") == []
    assert bouncing_server.server is not None
    queued = bouncing_server.run(bouncing_server.server.context.store.queue.list_queued())
    notices = [entry for entry in queued if entry.sender == ""]
    assert [r.address for entry in notices for r in entry.recipients] == [SENDER]


# a client with the folder open, and a failing index


def test_a_delivery_wakes_a_session_waiting_on_the_folder(live_server: ServerThread) -> None:
    assert live_server.server is not None and live_server.server.context.notifier is not None
    notifier = live_server.server.context.notifier
    _send(live_server, [ALICE], _message("before"))

    async def subscribe() -> Subscription:
        return notifier.subscribe(ALICE, "INBOX")

    subscription = live_server.run(subscribe())
    try:
        _send(live_server, [ALICE], _message("while connected"))
        live_server.run(asyncio.wait_for(subscription.changed.wait(), 10))
    finally:
        subscription.close()
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "before"), (2, "while connected")]


def test_an_index_failure_keeps_the_message_and_a_sync_indexes_it(
        live_server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _send(live_server, [ALICE], _message("indexed"))

    async def broken(*_args: object) -> list[int]:
        raise OSError("database unavailable")

    mailboxes = _mailboxes(live_server)
    monkeypatch.setattr(mailboxes, "deliver_indexed", broken)
    caplog.set_level(logging.INFO)
    _send(live_server, [ALICE], _message("not indexed"))  # still 250: the file is durable in new/
    assert '"mailbox.index_failed"' in caplog.text
    assert [subject for _, subject in _subjects(live_server, ALICE, "INBOX")] == ["indexed"]
    monkeypatch.undo()
    live_server.run(mailboxes.sync(ALICE, "INBOX"))
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "indexed"), (2, "not indexed")]


def test_a_delivery_notice_to_a_local_sender_is_indexed(live_server: ServerThread) -> None:
    assert live_server.server is not None and live_server.server.context.delivery is not None
    local = live_server.server.context.delivery.notices.local
    assert local is not None
    assert live_server.run(local(ALICE, b"Subject: notice\r\n\r\nyour message bounced\r\n"))
    assert _subjects(live_server, ALICE, "INBOX") == [(1, "notice")]


def test_concurrent_deliveries_to_one_folder_each_get_their_own_uid(live_server: ServerThread) -> None:
    def session(number: int) -> None:
        with smtplib.SMTP(*live_server.address("smtp"), timeout=30) as client:
            for message in range(5):
                client.sendmail(SENDER, [ALICE], _message(f"{number}-{message}"))

    threads = [threading.Thread(target=session, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    found = _subjects(live_server, ALICE, "INBOX")
    assert [uid for uid, _ in found] == list(range(1, 41))
    assert sorted(subject for _, subject in found) == sorted(f"{n}-{m}" for n in range(8) for m in range(5))
    for number in range(8):  # each session's messages in the order it sent them
        assert [s for _, s in found if s.startswith(f"{number}-")] == [f"{number}-{m}" for m in range(5)]


def test_with_defer_a_mailbox_full_only_at_delivery_takes_this_one_message(live_server: ServerThread) -> None:
    _limit(live_server, ALICE, 3000)
    _send(live_server, ["sales@example.test"], _message("big", 4000))  # no SIZE=: alice had room at RCPT
    assert [subject for _, subject in _subjects(live_server, ALICE, "INBOX")] == ["big"]
    assert [subject for _, subject in _subjects(live_server, BOB, "INBOX")] == ["big"]
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}>", [ALICE])  # now over: the next is refused
    client.close()
    assert codes == [452]


def test_an_alias_is_refused_at_rcpt_only_when_every_mailbox_is_full(live_server: ServerThread) -> None:
    _limit(live_server, ALICE, None, 1)
    _limit(live_server, BOB, None, 1)  # before any check: a server reads limits every storage.cache_seconds
    _send(live_server, [ALICE], _message("alice is full now"))
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}>", ["sales@example.test"])
    client.close()
    assert codes == [250]  # bob still has room
    _send(live_server, [BOB], _message("bob is full now"))
    client, codes = _transaction(live_server, f"MAIL FROM:<{SENDER}>", ["sales@example.test"])
    client.close()
    assert codes == [452]
