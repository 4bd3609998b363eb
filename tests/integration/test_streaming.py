"""Message content streams to a file per message (issue 11, points 12 and 13), over real sockets.

A 45 MB message is accepted and stored byte-exact (DATA and BDAT, local and queued copies); the
incoming file is removed on RSET, on disconnect and after acceptance; over ``[smtp]
max_bytes_in_flight`` a new DATA or BDAT gets 452 4.3.1; a full disk, while the content is written
or at acceptance, gets 452 4.3.1 too (a real 1 MiB tmpfs when run as root).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.core.replies import Reply
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    RawClient,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

BIG = 45 * 1024 * 1024
HEADER = b"From: someone@remote.example\r\nTo: bob@example.test\r\nSubject: big\r\n\r\n"


def body_of(size: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ... .leading dots stay\r\n"
    return (line * (size // len(line) + 1))[:size - 2] + b"\r\n"


def stuffed(content: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency, as a client applies it."""
    return (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:]


def envelope(client: RawClient, recipient: str = BOB) -> None:
    assert client.read_reply()[0] == 220
    assert client.command("EHLO client.example.net")[0] == 250
    assert client.command("MAIL FROM:<someone@remote.example>")[0] == 250
    assert client.command(f"RCPT TO:<{recipient}>")[0] == 250


def incoming_files(server: ServerThread) -> list[Path]:
    directory = server.config.incoming_dir
    return sorted(directory.iterdir()) if directory.is_dir() else []


def wait_idle(server: ServerThread) -> None:
    """Until every session's incoming file is removed (an event, not a sleep)."""
    assert server.server is not None
    server.run(server.server.context.incoming_store().wait_idle())


def stored_body(message: bytes) -> bytes:
    """The stored message without the Received: field the server put on top."""
    assert message.startswith(b"Received: ")
    return message[message.index(HEADER[:20]):]


@pytest.fixture
def big_server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data", smtp={"max_message_size": 50 * 1024 * 1024})) as server:
        yield server


def test_a_45_mb_message_over_data_is_stored_byte_exact(big_server: ServerThread) -> None:
    message = HEADER + body_of(BIG)
    client = RawClient(big_server.address("smtp"), timeout=120)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(stuffed(message) + b".\r\n")
    code, text = client.read_reply()
    assert code == 250, text
    assert client.command("QUIT")[0] == 221
    client.close()
    (stored,) = big_server.messages(BOB)
    assert stored_body(stored) == message
    wait_idle(big_server)
    assert incoming_files(big_server) == []


def test_a_45_mb_message_over_bdat_is_stored_byte_exact(big_server: ServerThread) -> None:
    message = HEADER + body_of(BIG)
    client = RawClient(big_server.address("smtp"), timeout=120)
    envelope(client)
    cut = len(message) // 3
    client.send(b"BDAT %d\r\n" % cut + message[:cut])
    assert client.read_reply()[0] == 250
    client.send(b"BDAT %d LAST\r\n" % (len(message) - cut) + message[cut:])
    code, text = client.read_reply()
    assert code == 250, text
    client.close()
    (stored,) = big_server.messages(BOB)
    assert stored_body(stored) == message
    wait_idle(big_server)
    assert incoming_files(big_server) == []


def test_a_submitted_message_is_queued_and_stored_byte_exact(big_server: ServerThread) -> None:
    message = b"From: alice@example.test\r\nSubject: both\r\n\r\n" + body_of(3 * 1024 * 1024)
    host, port = big_server.address("submission")
    with smtplib.SMTP(host, port, timeout=60) as client:
        client.starttls(context=client_tls_context())
        client.login(ALICE, ALICE_PASSWORD)
        assert client.sendmail(ALICE, [BOB, "carol@remote.example"], message) == {}
    (local,) = big_server.messages(BOB)
    assert local.endswith(message)
    (queued,) = [p for p in big_server.spool_files() if p.suffix == ".eml"]
    assert queued.read_bytes().endswith(message)
    assert queued.read_bytes() == local  # one Received: header, the same bytes in both copies


def test_a_forged_field_is_removed_from_the_head_of_a_big_message(big_server: ServerThread) -> None:
    forged = b"X-Spam-Status: No, score=-100 (forged)\r\n"
    body = body_of(2 * 1024 * 1024)
    client = RawClient(big_server.address("smtp"), timeout=60)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(stuffed(forged + HEADER + body) + b".\r\n")
    assert client.read_reply()[0] == 250
    client.close()
    (stored,) = big_server.messages(BOB)
    assert stored_body(stored) == HEADER + body  # the field is gone, the rest of the file follows
    assert b"forged" not in stored


def test_a_header_block_larger_than_the_limit_is_refused(big_server: ServerThread) -> None:
    client = RawClient(big_server.address("smtp"), timeout=60)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"X-Spam-Status: forged\r\n" + b"X-Pad: " + b"p" * 90 + b"\r\n" * 1
                + (b"X-Pad: " + b"p" * 90 + b"\r\n") * 4000 + b".\r\n")  # 400 KB, no empty line
    assert client.read_reply() == (552, ["5.3.4 Message header section too large"])
    assert client.command("NOOP")[0] == 250
    client.close()
    wait_idle(big_server)
    assert incoming_files(big_server) == [] and big_server.messages(BOB) == []


def test_rset_after_a_bdat_chunk_removes_its_file(live_server: ServerThread) -> None:
    assert live_server.server is not None
    store = live_server.server.context.incoming_store()
    client = RawClient(live_server.address("smtp"))
    envelope(client)
    client.send(b"BDAT 100000\r\n" + HEADER + body_of(100000 - len(HEADER)))
    assert client.read_reply()[0] == 250
    assert (store.open_files, store.in_flight) == (1, 100000)
    assert client.command("RSET")[0] == 250  # answered once the file is gone
    assert (store.open_files, store.in_flight) == (0, 0)
    assert incoming_files(live_server) == []
    client.close()


def test_a_client_that_disconnects_mid_data_leaves_no_file(live_server: ServerThread) -> None:
    assert live_server.server is not None
    store = live_server.server.context.incoming_store()
    client = RawClient(live_server.address("smtp"))
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert store.open_files == 1
    client.send(HEADER + body_of(150_002))
    client.close()
    wait_idle(live_server)
    assert incoming_files(live_server) == []
    assert store.in_flight == 0
    assert live_server.messages(BOB) == []


def test_over_the_bytes_in_flight_new_messages_get_452_before_their_content(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", smtp={"max_bytes_in_flight": 50_000})
    with running_server(config) as server:
        first = RawClient(server.address("smtp"))
        envelope(first)
        first.send(b"BDAT 60000\r\n" + HEADER + body_of(60000 - len(HEADER)))
        assert first.read_reply()[0] == 250  # 60,000 bytes of this process's 50,000 are taken
        second = RawClient(server.address("smtp"))
        envelope(second)
        code, text = second.command("DATA")
        assert (code, text) == (452, ["4.3.1 Insufficient system storage, try again later"])
        second.send(b"BDAT 12 LAST\r\nSubject: x\r\n")  # RFC 3030 2: the chunk is read regardless
        assert second.read_reply() == (452, ["4.3.1 Insufficient system storage, try again later"])
        assert second.command("NOOP")[0] == 250
        assert first.command("RSET")[0] == 250  # frees the bytes
        assert second.command("MAIL FROM:<someone@remote.example>")[0] == 250
        assert second.command(f"RCPT TO:<{BOB}>")[0] == 250
        assert second.command("DATA")[0] == 354
        second.send(HEADER + b"hello\r\n.\r\n")
        assert second.read_reply()[0] == 250
        first.close()
        second.close()


# ----- a full disk ------------------------------------------------------------------------------

@contextlib.contextmanager
def tiny_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A real file system of ``size`` mounted on ``path`` (root only; the test is skipped otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def send_data(server: ServerThread, message: bytes) -> tuple[int, list[str]]:
    client = RawClient(server.address("smtp"), timeout=60)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(stuffed(message) + b".\r\n")
    reply = client.read_reply()
    assert client.command("NOOP")[0] == 250  # the session goes on
    client.close()
    return reply


def test_a_full_disk_while_data_streams_in_gets_452_431(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    with tiny_tmpfs(config.incoming_dir), running_server(config) as server:
        caplog.set_level(logging.INFO)
        code, text = send_data(server, HEADER + body_of(2_000_000))
        assert (code, text[0][:6]) == (452, "4.3.1 ")
        assert "disk is full" in text[0]
        wait_idle(server)
        assert incoming_files(server) == []  # the partial file is gone: the tmpfs is empty again
        assert server.messages(BOB) == []
        assert '"event": "smtp.disk_full"' in caplog.text and '"stage": "incoming"' in caplog.text
        assert send_data(server, HEADER + b"small\r\n")[0] == 250  # room again for what fits


def test_a_full_disk_at_acceptance_gets_452_431(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    with tiny_tmpfs(config.maildir_root), running_server(config) as server:
        caplog.set_level(logging.INFO)
        code, text = send_data(server, HEADER + body_of(1_500_000))
        assert (code, text[0][:6]) == (452, "4.3.1 ")
        wait_idle(server)
        assert incoming_files(server) == []
        assert server.messages(BOB) == []
        assert '"event": "smtp.disk_full"' in caplog.text and '"stage": "accept"' in caplog.text


# ----- every way a message ends gives back its file and its share of the cap -----------------

CHUNK = 300_000  # over incoming.SPILL_SIZE: the message has its file on disk


def in_flight(server: ServerThread) -> tuple[int, int]:
    assert server.server is not None
    store = server.server.context.incoming_store()
    return store.open_files, store.in_flight


def send_chunk(client: RawClient, size: int = CHUNK, last: bool = False) -> tuple[int, list[str]]:
    client.send(f"BDAT {size}{' LAST' if last else ''}\r\n".encode() + HEADER + body_of(size - len(HEADER)))
    return client.read_reply()


class _Failing(SessionHook):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def on_message(self, session: SessionFacts, message: MessageFacts) -> MessageDecision:
        if self.mode == "raise":
            raise RuntimeError("a hook failed")
        return MessageDecision(reply=Reply(550, "5.7.1", "refused by policy"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000,
                                                      "max_bytes_in_flight": 3 * CHUNK})
    with running_server(config) as live:
        yield live


@pytest.mark.parametrize("mode, code", [("raise", 451), ("refuse", 550)])
def test_a_hook_that_fails_or_refuses_leaves_no_file(server: ServerThread, mode: str, code: int) -> None:
    assert server.server is not None
    server.server.context.hooks.append(_Failing(mode))
    client = RawClient(server.address("smtp"))
    envelope(client)
    assert send_chunk(client, 2 * CHUNK, last=True)[0] == code
    assert in_flight(server) == (0, 0) and incoming_files(server) == []
    assert client.command("NOOP")[0] == 250
    client.close()


@pytest.mark.parametrize("ending", ["QUIT", "STARTTLS", "disconnect"])
def test_a_session_ended_after_a_bdat_chunk_leaves_no_file(server: ServerThread, ending: str) -> None:
    client = RawClient(server.address("smtp"))
    envelope(client)
    assert send_chunk(client)[0] == 250
    assert in_flight(server) == (1, CHUNK)
    if ending == "disconnect":
        client.close()
    else:
        client.command(ending)
    wait_idle(server)
    assert in_flight(server) == (0, 0) and incoming_files(server) == []
    client.close()


def test_the_cap_is_given_back_by_every_aborted_message(server: ServerThread) -> None:
    """Twenty aborted messages, each near the cap: no share of it leaks, the next one gets 354."""
    for round_ in range(20):
        client = RawClient(server.address("smtp"))
        envelope(client)
        assert send_chunk(client, 2 * CHUNK)[0] == 250
        if round_ % 2:
            client.command("RSET")
        client.close()
        wait_idle(server)
    assert in_flight(server) == (0, 0)
    client = RawClient(server.address("smtp"))
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(HEADER + b"fine\r\n.\r\n")
    assert client.read_reply()[0] == 250
    client.close()


def test_server_stop_with_a_message_in_progress_leaves_no_file(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    with running_server(config) as live:
        client = RawClient(live.address("smtp"))
        envelope(client)
        assert send_chunk(client)[0] == 250
        assert in_flight(live) == (1, CHUNK)  # on its way to its file
    assert incoming_files(live) == []  # removed by the stop (or never created), not left for the next start
    client.close()


def submit(server: ServerThread, recipients: list[str], message: bytes) -> tuple[int, bytes]:
    host, port = server.address("submission")
    with smtplib.SMTP(host, port, timeout=60) as client:
        client.starttls(context=client_tls_context())
        client.login(ALICE, ALICE_PASSWORD)
        try:
            client.sendmail(ALICE, recipients, message)
        except smtplib.SMTPDataError as exc:
            assert client.noop()[0] == 250  # the session goes on
            return exc.smtp_code, exc.smtp_error
    return 250, b""


@pytest.mark.parametrize("full", ["spool", "mail"])
def test_a_full_spool_or_maildir_disk_gets_452_431(tmp_path: Path, full: str) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    target = config.spool_dir if full == "spool" else config.maildir_root
    message = b"From: alice@example.test\r\nSubject: big\r\n\r\n" + body_of(1_500_000)
    with tiny_tmpfs(target), running_server(config) as live:
        code, text = submit(live, [BOB, ALICE, "carol@remote.example"], message)
        assert (code, text[:6]) == (452, b"4.3.1 ")
        wait_idle(live)
        assert incoming_files(live) == [] and in_flight(live) == (0, 0)
        assert live.messages(BOB) == [] and not [p for p in live.spool_files() if p.suffix == ".eml"]
        assert submit(live, [BOB, "carol@remote.example"], b"From: alice@example.test\r\n\r\nsmall\r\n")[0] == 250


@pytest.mark.parametrize("other", ["spool", "mail"])
def test_copies_to_another_file_system_are_byte_exact(tmp_path: Path, other: str) -> None:
    """The spool or the Maildirs on another file system than incoming/: copy_file_range gives
    EXDEV (or copies across), the fallback copies in blocks; both copies are whole."""
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    target = config.spool_dir if other == "spool" else config.maildir_root
    message = b"From: alice@example.test\r\nSubject: big\r\n\r\n" + body_of(3_000_000)
    with tiny_tmpfs(target, "40m"), running_server(config) as live:
        assert submit(live, [BOB, ALICE, "carol@remote.example"], message) == (250, b"")
        (local,) = live.messages(BOB)
        assert local.endswith(message) and live.messages(ALICE) == [local]
        (queued,) = [p for p in live.spool_files() if p.suffix == ".eml"]
        assert queued.read_bytes() == local
        wait_idle(live)
        assert incoming_files(live) == []


def test_messages_started_under_the_cap_cannot_stream_past_it(server: ServerThread) -> None:
    """Every session may start its message while the process is under the cap; once their content
    takes the process over it, a message that gets more content is refused at its end (452 4.3.1)
    and stores no more: the bytes in flight stay within the cap and one piece per message."""
    first, second = RawClient(server.address("smtp")), RawClient(server.address("smtp"))
    envelope(first)
    envelope(second)
    assert send_chunk(first, 2 * CHUNK)[0] == 250
    assert send_chunk(second, 2 * CHUNK)[0] == 250  # started under the cap (3 chunks), ends over it
    assert in_flight(server)[1] <= 3 * CHUNK + 512 * 1024  # over by at most one received piece
    for client in (first, second):
        client.send(b"BDAT 2 LAST\r\n\r\n")
        assert client.read_reply() == (452, ["4.3.1 Insufficient system storage, try again later"])
    wait_idle(server)
    assert in_flight(server) == (0, 0) and incoming_files(server) == []
    assert server.messages(BOB) == []
    assert second.command("MAIL FROM:<someone@remote.example>")[0] == 250  # the session goes on
    assert second.command(f"RCPT TO:<{BOB}>")[0] == 250
    assert send_chunk(second, 2 * CHUNK, last=True)[0] == 250  # the retry fits
    first.close()
    second.close()


def test_a_full_disk_while_bdat_chunks_stream_in_gets_452_431(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    with tiny_tmpfs(config.incoming_dir), running_server(config) as live:
        caplog.set_level(logging.INFO)
        client = RawClient(live.address("smtp"), timeout=60)
        envelope(client)
        for _ in range(6):  # 1.8 MB into a 1 MiB file system: each chunk is still read and answered
            assert send_chunk(client)[0] == 250
        client.send(b"BDAT 2 LAST\r\n\r\n")
        code, text = client.read_reply()
        assert (code, text[0][:6]) == (452, "4.3.1 ")
        assert client.command("NOOP")[0] == 250
        wait_idle(live)
        assert incoming_files(live) == [] and in_flight(live) == (0, 0) and live.messages(BOB) == []
        assert client.command("MAIL FROM:<someone@remote.example>")[0] == 250
        assert client.command(f"RCPT TO:<{BOB}>")[0] == 250
        assert send_chunk(client, CHUNK, last=True)[0] == 250  # fits again
        client.close()
        assert "Traceback" not in caplog.text


class _Truncating(SessionHook):
    """Cuts the message's incoming file in half, as a failing disk or a stray process could."""

    async def on_message(self, session: SessionFacts, message: MessageFacts) -> MessageDecision:
        assert message.content.rest is not None
        os.truncate(message.content.rest.path, message.content.rest.length // 2)
        return MessageDecision()


def test_an_incoming_file_cut_short_before_acceptance_is_never_stored_short(tmp_path: Path) -> None:
    config = server_config(tmp_path / "data", smtp={"max_message_size": 5_000_000})
    with running_server(config) as live:
        assert live.server is not None
        live.server.context.hooks.append(_Truncating())
        message = b"From: alice@example.test\r\nSubject: big\r\n\r\n" + body_of(1_000_000)
        code, _text = submit(live, [BOB, ALICE, "carol@remote.example"], message)
        assert code == 451  # a local error, retried by the client; nothing half-stored
        wait_idle(live)
        assert live.all_mail_files() == [] and not [p for p in live.spool_files() if p.suffix == ".eml"]
        assert incoming_files(live) == [] and in_flight(live) == (0, 0)


def test_a_stuck_disk_stops_the_session_reading_its_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-pressure: while the incoming file's writes do not return, the server takes no more
    than its write buffer (1 MiB) and the socket's read buffer; the client's sends then block."""
    import socket
    import threading

    from hardmail.delivery import incoming as incoming_module

    stuck, writing = threading.Event(), threading.Event()
    real_write_all = incoming_module.write_all

    def slow_write_all(fd: int, parts: list[bytes]) -> None:
        writing.set()
        stuck.wait(60)
        real_write_all(fd, parts)

    monkeypatch.setattr(incoming_module, "write_all", slow_write_all)
    config = server_config(tmp_path / "data", smtp={"max_message_size": 50_000_000})
    with running_server(config) as live:
        client = RawClient(live.address("smtp"), timeout=60)
        envelope(client)
        assert client.command("DATA")[0] == 354
        sock: socket.socket = client.sock
        block, sent = body_of(64 * 1024), len(HEADER)
        sock.sendall(HEADER)
        while not writing.is_set() and sent < 40_000_000:  # until the first write to the file is stuck
            sock.sendall(block)
            sent += len(block)
        sock.setblocking(False)
        pending = b""  # the rest of a block a partial send left: never cut a CRLF in two
        try:
            while sent < 40_000_000:
                pending = pending or block
                done = sock.send(pending)
                sent, pending = sent + done, pending[done:]
        except BlockingIOError:
            pass
        assert sent < 40_000_000  # the client is blocked: the server stopped reading
        assert in_flight(live)[1] <= 3 * 1024 * 1024
        stuck.set()
        sock.setblocking(True)
        sock.sendall(pending + block * 100 + b".\r\n")  # the message goes on once the disk does
        assert client.read_reply()[0] == 250
        client.close()
