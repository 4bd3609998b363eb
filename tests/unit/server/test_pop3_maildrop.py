"""The POP3 maildrop helpers: the exclusive flock, POP3 sizes from files, the command pace."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hardmail.mailbox import MessageRecord
from hardmail.server.pacing import CommandPacer
from hardmail.server.pop3_maildrop import MaildropInUse, MaildropLock, SizeCache, pop3_sizes


def _try_lock(path: str, answer: multiprocessing.SimpleQueue) -> None:  # type: ignore[type-arg]
    try:
        MaildropLock.take(Path(path)).release()
        answer.put("taken")
    except MaildropInUse:
        answer.put("in use")


def test_lock_is_exclusive_within_a_process_and_across_processes(tmp_path: Path) -> None:
    lock = MaildropLock.take(tmp_path)
    with pytest.raises(MaildropInUse):
        MaildropLock.take(tmp_path)
    answer: multiprocessing.SimpleQueue = multiprocessing.get_context("spawn").SimpleQueue()  # type: ignore[type-arg]
    process = multiprocessing.get_context("spawn").Process(target=_try_lock, args=(str(tmp_path), answer))
    process.start()
    process.join(60)
    assert answer.get() == "in use"
    lock.release()
    lock.release()  # idempotent
    MaildropLock.take(tmp_path).release()


def _record(uid: int, name: str) -> MessageRecord:
    return MessageRecord(uid=uid, modseq=1, flags=frozenset(), internaldate=datetime.now(UTC), size=0, name=name)


def test_sizes_count_crlf_and_use_dovecot_virtual_size(tmp_path: Path) -> None:
    (tmp_path / "cur").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "cur" / "a.host,S=9:2,S").write_bytes(b"A: b\r\n\r\nx")
    (tmp_path / "new" / "b.host").write_bytes(b"A: b\n\nx\n")
    (tmp_path / "cur" / "c.host,S=3,W=77:2,").write_bytes(b"abc")
    records = [_record(1, "a.host,S=9"), _record(2, "b.host"), _record(3, "c.host,S=3,W=77"), _record(4, "gone")]
    assert pop3_sizes(tmp_path, records) == [9, 11, 77, None]
    (tmp_path / "new" / "b.host").unlink()
    assert pop3_sizes(tmp_path, records[1:2]) == [11]  # remembered: files never change under one name


def test_size_cache_drops_the_least_recently_used() -> None:
    cache = SizeCache(entries=2)
    cache.put(("d", "a"), 1)
    cache.put(("d", "b"), 2)
    assert cache.get(("d", "a")) == 1
    cache.put(("d", "c"), 3)
    assert cache.get(("d", "b")) is None and cache.get(("d", "a")) == 1


def test_command_pace_allows_a_burst_then_waits() -> None:
    pace = CommandPacer(10)
    assert all(pace.delay(0.0) == 0.0 for _ in range(20))
    assert pace.delay(0.0) > 0.0
    assert CommandPacer(0).delay(0.0) == 0.0
