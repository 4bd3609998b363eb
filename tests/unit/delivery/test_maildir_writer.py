"""The Maildir writer process: batches written by a child, each caller's own outcome, no answer
before the fsync, and a dead child costing only the requests in flight."""

from __future__ import annotations

import asyncio
import io
import os
import pickle
import signal
from pathlib import Path

import pytest

from hardmail.delivery import maildir as maildir_module
from hardmail.delivery import maildir_writer
from hardmail.delivery.durable import FileRange
from hardmail.delivery.group_commit import GroupCommit
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.maildir_writer import FRAME, MaildirWriterProcess, WriterStopped, serve

HOST = "mx.example.org"


async def test_a_batch_is_written_by_the_child(tmp_path: Path, sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    try:
        outcomes = await writer.commit([(["bob@example.org"], [b"X-A: 1\r\n", sample_message], None),
                                        (["carol@example.org"], [sample_message], "Junk")])
    finally:
        await writer.close()
    [bob], [carol] = outcomes  # type: ignore[misc]
    assert bob.parent == tmp_path / "mail" / "example.org" / "bob" / "new"
    assert bob.read_bytes() == b"X-A: 1\r\n" + sample_message
    assert carol.parent == tmp_path / "mail" / "example.org" / "carol" / ".Junk" / "new"


async def test_a_bad_message_fails_only_its_own_caller(tmp_path: Path, sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    try:
        good, bad = await writer.commit([(["bob@example.org"], [sample_message], None),
                                         (["not-an-address"], [sample_message], None)])
    finally:
        await writer.close()
    assert isinstance(bad, ValueError) and isinstance(good, list) and good[0].exists()


async def test_a_dead_child_fails_what_is_in_flight_and_is_started_again(tmp_path: Path,
                                                                          sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    try:
        await writer.commit([(["bob@example.org"], [sample_message], None)])
        first = writer._proc
        assert first is not None
        first.stdin.write(FRAME.pack(1_000_000))  # type: ignore[union-attr]  # the child waits for the body
        pending = asyncio.ensure_future(writer.commit([(["bob@example.org"], [sample_message], None)]))
        await asyncio.sleep(0)
        os.kill(first.pid, signal.SIGKILL)
        with pytest.raises(WriterStopped):
            await pending
        [[again]] = await writer.commit([(["bob@example.org"], [sample_message], None)])  # type: ignore[misc]
        assert again.exists() and writer._proc is not first
    finally:
        await writer.close()


async def test_close_ends_the_child(tmp_path: Path, sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    await writer.commit([(["bob@example.org"], [sample_message], None)])
    child = writer._proc
    await writer.close()
    assert child is not None and child.returncode == 0


async def test_group_commit_through_the_writer(tmp_path: Path, sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    commit = GroupCommit(MaildirStore(tmp_path / "mail", HOST), asyncio.get_running_loop(), writer=writer)
    try:
        results = await asyncio.gather(*(commit.deliver([f"u{i}@example.org"], [sample_message]) for i in range(5)))
    finally:
        await writer.close()
    assert [path.read_bytes() for [path] in results] == [sample_message] * 5


def test_the_child_answers_only_after_the_fsync(tmp_path: Path, sample_message: bytes,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync_file = maildir_module.fsync_file
    monkeypatch.setattr(maildir_module, "fsync_file",
                        lambda path, fd: (synced.append(path.name), real_fsync_file(path, fd)))

    class Answers(io.BytesIO):
        synced_at_write: list[str] = []

        def write(self, data: bytes) -> int:  # type: ignore[override]
            self.synced_at_write = list(synced)
            return super().write(data)

    request = pickle.dumps((7, [(["bob@example.org"], [sample_message], None)]))
    answers = Answers()
    serve(MaildirStore(tmp_path / "mail", HOST), io.BytesIO(FRAME.pack(len(request)) + request), answers)
    body = answers.getvalue()[FRAME.size:]
    request_id, [[path]] = pickle.loads(body)
    assert request_id == 7 and Path(path).name in answers.synced_at_write


async def test_no_child_starts_after_close(tmp_path: Path, sample_message: bytes) -> None:
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    await writer.commit([(["bob@example.org"], [sample_message], None)])
    await writer.close()
    with pytest.raises(WriterStopped):
        await writer.commit([(["bob@example.org"], [sample_message], None)])
    assert writer._proc is None


async def test_the_child_gets_a_file_range_not_the_bytes_and_copies_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    incoming = tmp_path / "incoming-message"
    body = os.urandom(4 * 1024 * 1024)
    incoming.write_bytes(b"Subject: big\r\n\r\n" + body)
    sent: list[int] = []
    dumps = pickle.dumps
    monkeypatch.setattr(maildir_writer.pickle, "dumps", lambda *a: sent.append(len(dumps(*a))) or dumps(*a))
    writer = MaildirWriterProcess(tmp_path / "mail", HOST)
    try:
        [paths] = await writer.commit([(["bob@example.org"], [b"Received: x\r\nSubject: big\r\n\r\n",
                                                              FileRange(str(incoming), 16, len(body))], None)])
    finally:
        await writer.close()
    assert isinstance(paths, list)
    assert paths[0].read_bytes() == b"Received: x\r\nSubject: big\r\n\r\n" + body
    assert sent and max(sent) < 4096  # the request named the file; 4 MB never went through the pipe
