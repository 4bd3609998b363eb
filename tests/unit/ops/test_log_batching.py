"""The configured log handler writes the lines of one event-loop turn with one write, in order."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import sys
import threading
from pathlib import Path

import pytest

from hardmail.config.schema import LoggingSection
from hardmail.ops import log
from hardmail.ops.log import configure_logging, log_event


class CountingStream:
    """A stand-in for sys.stderr that keeps every write call."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in "".join(self.writes).splitlines()]


def fake_stderr(monkeypatch: pytest.MonkeyPatch) -> CountingStream:
    """Replaces sys.stderr in the test body (pytest's capture sets its own between fixtures and the call)."""
    stream = CountingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(LoggingSection())
    return stream


def configured_handler() -> logging.Handler:
    [handler] = [h for h in logging.getLogger(log.ROOT_LOGGER_NAME).handlers if h.get_name() == log._HANDLER_NAME]
    return handler


async def test_one_write_per_loop_turn_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    names = [f"smtp.event{i}" for i in range(7)]
    for name in names:
        log_event(name, session="s1")
    assert stderr.writes == []
    await asyncio.sleep(0)
    assert len(stderr.writes) == 1
    assert stderr.events() == names
    log_event("next.turn")
    await asyncio.sleep(0)
    assert len(stderr.writes) == 2 and stderr.events() == [*names, "next.turn"]


async def test_warning_writes_pending_lines_then_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("first")
    log_event("second")
    log_event("third", level="warning")
    assert stderr.events() == ["first", "second", "third"]  # at once, before the turn ends
    log_event("fourth")
    log_event("fifth", level="error")
    log_event("sixth")
    await asyncio.sleep(0)
    assert stderr.events() == ["first", "second", "third", "fourth", "fifth", "sixth"]


def test_without_a_loop_each_line_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("one")
    assert stderr.writes and stderr.events() == ["one"]
    log_event("two")
    assert len(stderr.writes) == 2 and stderr.events() == ["one", "two"]


async def test_flush_and_close_write_pending_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("flushed")
    configured_handler().flush()
    assert stderr.events() == ["flushed"]
    log_event("closed")
    log.remove_configured_handler()
    assert stderr.events() == ["flushed", "closed"]
    await asyncio.sleep(0)  # the turn's callback finds nothing left to write
    assert len(stderr.writes) == 2


async def test_batch_goes_to_the_stderr_of_the_time_of_writing(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("late")
    replacement = CountingStream()
    monkeypatch.setattr(sys, "stderr", replacement)
    await asyncio.sleep(0)
    assert stderr.writes == [] and replacement.events() == ["late"]


async def test_a_large_batch_is_written_before_the_turn_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("big", blob="x" * 40_000)
    assert stderr.writes == []
    log_event("bigger", blob="y" * 40_000)
    assert stderr.writes and stderr.events() == ["big", "bigger"]


async def test_writes_carry_whole_lines_of_at_most_pipe_buf_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    for n in range(100):
        log_event("line", n=n, text="ü" * 30)
    await asyncio.sleep(0)
    assert len(stderr.writes) > 1  # ~100 lines of ~100 bytes do not fit one atomic write
    for piece in stderr.writes:
        assert len(piece.encode("utf-8")) <= select.PIPE_BUF and piece.endswith("\n")
    assert [json.loads(line)["n"] for line in "".join(stderr.writes).splitlines()] == list(range(100))


async def test_worker_thread_line_follows_the_pending_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    log_event("loop.first")
    log_event("loop.second")
    worker = threading.Thread(target=log_event, args=("worker",))
    worker.start()
    worker.join()  # the loop is blocked: its batch is still pending while the thread writes
    assert stderr.events() == ["loop.first", "loop.second", "worker"]
    log_event("loop.third")
    await asyncio.to_thread(log_event, "to_thread")
    await asyncio.sleep(0)
    assert stderr.events() == ["loop.first", "loop.second", "worker", "loop.third", "to_thread"]


def test_batch_of_a_stopped_loop_is_written_before_the_next_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fake_stderr(monkeypatch)
    async def stop_then_log() -> None:
        asyncio.get_running_loop().stop()
        log_event("stopped.loop")

    loop = asyncio.new_event_loop()
    task = loop.create_task(stop_then_log())
    loop.run_forever()  # ends with the turn's write still queued
    loop.close()
    assert task.done() and stderr.writes == []

    async def log_in_new_loop() -> None:
        log_event("new.loop")
        assert stderr.events() == ["stopped.loop"]

    asyncio.run(log_in_new_loop())
    assert stderr.events() == ["stopped.loop", "new.loop"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_write_the_parents_pending_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "stderr.txt"

    async def log_and_fork() -> None:
        log_event("parent.pending")
        pid = os.fork()
        if pid == 0:  # the child: no running loop here, so its line is written at once
            try:
                log_event("child")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)

    with output.open("a", encoding="utf-8") as stream:
        monkeypatch.setattr(sys, "stderr", stream)
        configure_logging(LoggingSection())
        asyncio.run(log_and_fork())
        log.remove_configured_handler()
    events = [json.loads(line)["event"] for line in output.read_text(encoding="utf-8").splitlines()]
    assert sorted(events) == ["child", "parent.pending"]


def test_file_target_reopens_after_logrotate(tmp_path: Path) -> None:
    target = tmp_path / "hardmail.log"
    configure_logging(LoggingSection(file=target))
    log_event("before.rotate")
    target.rename(tmp_path / "hardmail.log.1")
    log_event("after.rotate")
    target.unlink()
    log_event("after.delete")
    log.remove_configured_handler()
    assert (tmp_path / "hardmail.log.1").read_text(encoding="utf-8").count("before.rotate") == 1
    [line] = target.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["event"] == "after.delete"


async def test_file_target_is_checked_and_written_once_per_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "hardmail.log"
    configure_logging(LoggingSection(file=target))
    stats: list[object] = []
    real_lstat = os.lstat  # lstat: a symbolic link planted at the path is not its target
    monkeypatch.setattr(os, "lstat", lambda path, *a, **k: stats.append(path) or real_lstat(path, *a, **k))
    for i in range(5):
        log_event("rotated.batch", n=i)
    target.rename(tmp_path / "hardmail.log.1")
    await asyncio.sleep(0)
    assert stats == [target]
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]
    assert (tmp_path / "hardmail.log.1").read_text(encoding="utf-8") == ""


def _without_ts(stream: CountingStream) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in "".join(stream.writes).splitlines()]
    return [{k: v for k, v in line.items() if k != "ts"} for line in lines]


async def test_lines_skip_the_log_record_only_when_nothing_else_would_see_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = log.EventLogger(session="s1", peer="192.0.2.1")
    factory = logging.getLogRecordFactory()
    made: list[object] = []
    logging.setLogRecordFactory(lambda *args, **kwargs: made.append(args) or factory(*args, **kwargs))
    try:
        stderr = fake_stderr(monkeypatch)
        session.event("smtp.rcpt", recipient="bob@example.org", accepted=True)
        await asyncio.sleep(0)
        through_stdlib, records_made = _without_ts(stderr), len(made)
        monkeypatch.setattr(logging.root, "handlers", [])  # as in a server: no handler on the root logger
        stderr = fake_stderr(monkeypatch)
        session.event("smtp.rcpt", recipient="bob@example.org", accepted=True)
        await asyncio.sleep(0)
    finally:
        logging.setLogRecordFactory(factory)
    assert records_made == 1 and len(made) == 1  # the second line made no record
    assert _without_ts(stderr) == through_stdlib
    events = logging.getLogger(log.EVENTS_LOGGER_NAME)
    events.addFilter(lambda record: True)
    try:
        assert log._direct_handler(logging.INFO) is None  # a filter must see every record
    finally:
        events.filters.clear()
