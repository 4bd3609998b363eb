"""Incoming files (issue 11, point 12): content streamed to disk, a bounded head, the cap's count,
removal, and parts copied into the spool and Maildirs from the file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hardmail.core.diskfull import is_disk_full
from hardmail.delivery.content import MessageContent
from hardmail.delivery.durable import FileRange, write_new_file
from hardmail.delivery.incoming import IncomingStore, OverCap, clear_leftovers
from hardmail.delivery.maildir import MaildirStore

HEAD = b"From: a@example.org\r\nSubject: big\r\n\r\n"


def store(tmp_path: Path, cap: int = 10_000_000, header: int = 16 * 1024) -> IncomingStore:
    return IncomingStore(tmp_path / "incoming", cap, header)


async def test_content_is_in_a_private_file_and_the_head_in_memory(tmp_path: Path) -> None:
    body = b"line of the body\r\n" * 50_000  # 900 KB
    message = HEAD + body
    incoming = store(tmp_path).open()
    for i in range(0, len(message), 4096):
        incoming.write(message[i:i + 4096])
    content = await incoming.finish()
    assert content.head == HEAD
    assert content.size == len(message)
    assert content.rest == FileRange(str(incoming.path), len(HEAD), len(body))
    assert stat.S_IMODE(incoming.path.stat().st_mode) == 0o600
    assert incoming.path.read_bytes() == message
    assert content.read() == message


async def test_head_found_when_fed_one_byte_at_a_time(tmp_path: Path) -> None:
    incoming = store(tmp_path).open()
    message = HEAD + b"body\r\n\r\nmore\r\n"
    for i in range(len(message)):
        incoming.write(message[i:i + 1])
    content = await incoming.finish()
    assert content.head == HEAD
    assert content.read() == message
    await incoming.discard()


async def test_a_small_message_stays_in_memory(tmp_path: Path) -> None:
    incoming_store = store(tmp_path)
    incoming = incoming_store.open()
    incoming.write(HEAD)
    incoming.write(b"short body\r\n")
    content = await incoming.finish()
    assert (content.head, content.body, content.rest) == (HEAD, b"short body\r\n", None)
    assert content.parts() == [HEAD, b"short body\r\n"]
    assert not incoming.path.exists() and incoming_store.in_flight == len(HEAD) + 12
    await incoming.discard()
    assert incoming_store.in_flight == 0


async def test_a_message_without_a_body_is_all_head(tmp_path: Path) -> None:
    incoming = store(tmp_path).open()
    incoming.write(b"Subject: only\r\n")
    content = await incoming.finish()
    assert (content.head, content.rest) == (b"Subject: only\r\n", None)
    await incoming.discard()


async def test_a_message_with_no_header_fields_has_the_empty_line_as_head(tmp_path: Path) -> None:
    incoming = store(tmp_path).open()
    incoming.write(b"\r\nbody\r\n")
    content = await incoming.finish()
    assert content.head == b"\r\n"
    assert content.read() == b"\r\nbody\r\n"
    await incoming.discard()


async def test_a_header_block_over_the_limit_is_flagged_and_not_stored(tmp_path: Path) -> None:
    incoming_store = store(tmp_path, header=16 * 1024)
    incoming = incoming_store.open()
    for _ in range(1000):
        incoming.write(b"X-Pad: " + b"p" * 990 + b"\r\n")  # 1 MB of header, no empty line
    await incoming.finish()
    assert incoming.head_too_big
    assert len(incoming.head) == 16 * 1024
    assert incoming_store.in_flight < 32 * 1024  # the rest was neither kept nor written
    assert not incoming.path.exists()
    await incoming.discard()


async def test_discard_removes_the_file_and_gives_back_the_bytes(tmp_path: Path) -> None:
    incoming_store = store(tmp_path, cap=1000)
    incoming = incoming_store.open()
    incoming.write(HEAD + b"x" * 300_000)
    assert incoming_store.full and incoming_store.in_flight == len(HEAD) + 300_000
    with pytest.raises(OverCap):  # the piece that went over the cap is stored, then no more
        await incoming.finish()
    incoming.write(b"y" * 1000)
    assert incoming_store.in_flight == len(HEAD) + 300_000
    assert incoming.path.read_bytes() == HEAD + b"x" * 300_000
    await incoming.discard()
    assert not incoming.path.exists()
    assert (incoming_store.in_flight, incoming_store.open_files, incoming_store.full) == (0, 0, False)
    await incoming_store.wait_idle()  # returns at once: nothing is being received


async def test_discard_while_a_write_is_in_flight(tmp_path: Path) -> None:
    incoming_store = store(tmp_path)
    incoming = incoming_store.open()
    incoming.write(HEAD)
    for _ in range(64):
        incoming.write(b"y" * 65536)
    await incoming.wait_writable(2 * 1024 * 1024)  # a batch is written, more are queued
    await incoming.discard()  # waits for the batch in the thread, drops the queue, removes the file
    assert list((tmp_path / "incoming").iterdir()) == []
    assert incoming_store.in_flight == 0


async def test_back_pressure_waits_until_the_queue_is_written(tmp_path: Path) -> None:
    incoming = store(tmp_path, cap=1 << 40).open()
    incoming.write(HEAD)
    for _ in range(64):
        incoming.write(b"z" * 65536)  # 4 MiB queued
    assert incoming._buffered > 4 * 1024 * 1024
    await incoming.wait_writable(1024 * 1024)
    assert incoming._buffered <= 1024 * 1024
    assert incoming.path.stat().st_size >= 3 * 1024 * 1024
    await incoming.discard()


async def test_a_full_disk_is_reported_by_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    incoming = store(tmp_path).open()

    def no_space(fd: int, parts: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("hardmail.delivery.incoming.write_all", no_space)
    incoming.write(HEAD + b"body\r\n" * 50_000)
    with pytest.raises(OSError) as failure:
        await incoming.finish()
    assert is_disk_full(failure.value)
    incoming.write(b"more\r\n")  # ignored after the error
    await incoming.discard()
    assert not incoming.path.exists()


def test_parts_with_a_file_range_are_copied_byte_exact(tmp_path: Path) -> None:
    source = tmp_path / "source"
    data = os.urandom(3 * 1024 * 1024 + 17)
    source.write_bytes(data)
    content = MessageContent(b"Head: 1\r\n\r\n", FileRange(str(source), 5, len(data) - 5))
    target = tmp_path / "target"
    size = write_new_file(target, [b"Received: x\r\n", *content.with_head(b"New: 2\r\n\r\n").parts()])
    expected = b"Received: x\r\nNew: 2\r\n\r\n" + data[5:]
    assert target.read_bytes() == expected and size == len(expected)


def test_maildir_delivery_from_a_file_range(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"ignored" + b"body line\r\n" * 1000)
    maildir = MaildirStore(tmp_path / "mail", "mx.example.org")
    parts = [b"Subject: x\r\n\r\n", FileRange(str(source), 7, 11_000)]
    paths = maildir.deliver(["bob@example.org", "carol@example.org"], parts)
    for path in paths:
        assert path.read_bytes() == b"Subject: x\r\n\r\n" + b"body line\r\n" * 1000
        assert path.name.endswith(f",S={14 + 11_000}")


def test_leftovers_of_dead_processes_are_removed(tmp_path: Path) -> None:
    directory = tmp_path / "incoming"
    directory.mkdir()
    (directory / f"{os.getppid()}-live").write_bytes(b"x")
    (directory / "999999999-dead").write_bytes(b"x")
    (directory / "not-ours").write_bytes(b"x")
    assert clear_leftovers(directory) == ["999999999-dead"]
    assert sorted(p.name for p in directory.iterdir()) == sorted([f"{os.getppid()}-live", "not-ours"])


def test_disk_full_is_recognised_through_wrappers() -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EIO, "I/O error"))
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # what sqlite3 sets for SQLITE_FULL
    assert is_disk_full(OperationalError("INSERT ...", {}, full))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise RuntimeError("the writer failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(ValueError("no"))


def test_leftovers_named_with_the_starting_process_pid_are_removed(tmp_path: Path) -> None:
    """A container restarts its server with the same pid (often 1): the files a killed process left
    under that pid are leftovers too; those of another live process are kept."""
    directory = tmp_path / "incoming"
    directory.mkdir()
    (directory / f"{os.getpid()}-before-restart").write_bytes(b"x")
    (directory / f"{os.getppid()}-live-worker").write_bytes(b"x")
    assert clear_leftovers(directory) == [f"{os.getpid()}-before-restart"]
    assert [p.name for p in directory.iterdir()] == [f"{os.getppid()}-live-worker"]


async def test_a_discard_cancelled_mid_write_leaves_the_writer_thread_its_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server stop cancels the session while a batch is written in a thread: the descriptor must not
    be closed under that thread (its number could be reused by another file, which would get the
    message's bytes); the thread closes it and the file is removed once its write ends."""
    import asyncio
    import threading

    from hardmail.delivery import incoming as incoming_module

    entered, release = threading.Event(), threading.Event()
    seen: list[object] = []
    real_write_all = incoming_module.write_all

    def slow_write_all(fd: int, parts: list[bytes]) -> None:
        entered.set()
        release.wait(30)
        try:
            seen.append(os.fstat(fd).st_ino)
        except OSError as exc:
            seen.append(exc.errno)
        real_write_all(fd, parts)

    monkeypatch.setattr(incoming_module, "write_all", slow_write_all)
    incoming_store = store(tmp_path)
    incoming = incoming_store.open()
    incoming.write(HEAD + b"w" * 300_000)
    await asyncio.to_thread(entered.wait, 30)
    inode = incoming.path.stat().st_ino
    discard = asyncio.ensure_future(incoming.discard())
    await asyncio.sleep(0)  # the discard waits for the write in flight
    discard.cancel()
    with pytest.raises(asyncio.CancelledError):
        await discard
    assert not incoming.path.exists()  # removed at once
    release.set()
    writer = incoming._task
    if writer is not None:
        await asyncio.wait({writer})
    assert seen == [inode]  # the thread still had its own file
    assert incoming._fd is None and list((tmp_path / "incoming").iterdir()) == []
    assert (incoming_store.in_flight, incoming_store.open_files) == (0, 0)
