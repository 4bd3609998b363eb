"""The outbound spool: durable enqueue, listing, loading, removal and recovery of incomplete writes."""

from __future__ import annotations

import errno
import json
import os
import stat
import time

import pytest

from hardmail.delivery import spool as spool_module
from hardmail.delivery.spool import (
    OutboundSpool,
    QueueIdNotFound,
    SpoolEntry,
    SpoolError,
    is_queue_id,
    new_queue_id,
)


def enqueue_sample(spool: OutboundSpool, message: bytes, **kwargs) -> str:
    return spool.enqueue("alice@example.org", ["bob@example.net", "carol@example.com"], message,
                         origin_account="alice@example.org", **kwargs)


def test_enqueue_then_load_round_trips(spool, sample_message):
    queue_id = enqueue_sample(spool, sample_message, meta={"message_id": "X1"})
    entry, data = spool.load(queue_id)
    assert data == sample_message
    assert entry == SpoolEntry(
        queue_id=queue_id,
        sender="alice@example.org",
        recipients=("bob@example.net", "carol@example.com"),
        created_at=entry.created_at,
        size=len(sample_message),
        origin_account="alice@example.org",
        meta={"message_id": "X1"},
    )


def test_chunks_and_null_sender(spool, sample_message):
    queue_id = spool.enqueue("", ["bob@example.net"], [b"Received: x\r\n", sample_message],
                             origin_account=None)
    entry, data = spool.load(queue_id)
    assert data == b"Received: x\r\n" + sample_message
    assert entry.sender == ""
    assert entry.origin_account is None
    assert entry.meta == {}


def test_files_layout_and_modes(spool, sample_message, list_files):
    queue_id = enqueue_sample(spool, sample_message)
    names = [path.name for path in list_files(spool.queue_dir)]
    assert names == [f"{queue_id}.eml", f"{queue_id}.json"]
    assert stat.S_IMODE(spool.queue_dir.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in list_files(spool.queue_dir))
    envelope = json.loads((spool.queue_dir / f"{queue_id}.json").read_text())
    assert envelope["version"] == 1
    assert envelope["recipients"] == ["bob@example.net", "carol@example.com"]


def test_list_returns_complete_entries_oldest_first(spool, sample_message):
    ids = [enqueue_sample(spool, sample_message, queue_id=new_queue_id(now=1_800_000_000 + n))
           for n in (3, 1, 2)]
    assert [entry.queue_id for entry in spool.list()] == sorted(ids)
    assert sorted(ids) == [ids[1], ids[2], ids[0]]


def test_queue_ids_are_sortable_random_and_file_safe():
    earlier, later = new_queue_id(now=1_800_000_000.0), new_queue_id(now=1_800_000_000.001)
    assert earlier < later
    assert len(earlier) == 20 and is_queue_id(earlier)
    assert new_queue_id(now=1.0) != new_queue_id(now=1.0)
    assert not is_queue_id("../../etc/passwd")


def test_message_without_envelope_is_ignored(spool, sample_message):
    queue_id = enqueue_sample(spool, sample_message)
    orphan = new_queue_id()
    (spool.queue_dir / f"{orphan}.eml").write_bytes(sample_message)
    (spool.queue_dir / f".tmp-{orphan}.json").write_bytes(b"{")
    assert [entry.queue_id for entry in spool.list()] == [queue_id]


def test_envelope_without_message_is_ignored(spool, sample_message):
    queue_id = enqueue_sample(spool, sample_message)
    (spool.queue_dir / f"{queue_id}.eml").unlink()
    assert spool.list() == []
    with pytest.raises(QueueIdNotFound):
        spool.load(queue_id)


def test_damaged_envelope_is_skipped_and_reported(spool, sample_message, caplog):
    good = enqueue_sample(spool, sample_message)
    bad = enqueue_sample(spool, sample_message)
    (spool.queue_dir / f"{bad}.json").write_text('{"version": 1}')
    assert [entry.queue_id for entry in spool.list()] == [good]
    assert bad in caplog.text
    with pytest.raises(SpoolError, match="damaged envelope"):
        spool.load(bad)


def test_remove_deletes_both_files_and_is_idempotent(spool, sample_message, list_files):
    queue_id = enqueue_sample(spool, sample_message)
    spool.remove(queue_id)
    spool.remove(queue_id)
    assert list_files(spool.queue_dir) == []
    with pytest.raises(QueueIdNotFound, match=queue_id):
        spool.load(queue_id)


@pytest.mark.parametrize("bad_id", ["../x", "", "abc", "A" * 41, "0123456789abcdef"])
def test_bad_queue_ids_are_refused(spool, bad_id):
    with pytest.raises(QueueIdNotFound, match="not a queue id"):
        spool.load(bad_id)
    with pytest.raises(QueueIdNotFound):
        spool.remove(bad_id)


def test_a_caller_supplied_queue_id_is_used_and_never_overwritten(spool, sample_message):
    queue_id = enqueue_sample(spool, sample_message, queue_id="01HXABCDEFGH0123")
    assert queue_id == "01HXABCDEFGH0123"
    with pytest.raises(SpoolError, match="already in the spool"):
        enqueue_sample(spool, b"other", queue_id=queue_id)
    assert spool.load(queue_id)[1] == sample_message


def test_no_recipients_is_refused(spool, sample_message):
    with pytest.raises(SpoolError, match="at least one recipient"):
        spool.enqueue("a@example.org", [], sample_message, origin_account=None)


def test_failure_while_publishing_leaves_nothing(spool, sample_message, monkeypatch, list_files):
    def failing_fsync(path):
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(spool_module, "fsync_dir", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        enqueue_sample(spool, sample_message)
    assert list_files(spool.queue_dir) == []


def test_failure_while_writing_the_envelope_leaves_nothing(spool, sample_message, monkeypatch,
                                                          list_files):
    real_write = spool_module.write_new_file

    def fail_on_envelope(path, chunks, mode=0o600):
        if path.name.endswith(".json"):
            raise OSError(errno.ENOSPC, "no space left")
        return real_write(path, chunks, mode)

    monkeypatch.setattr(spool_module, "write_new_file", fail_on_envelope)
    with pytest.raises(OSError, match="no space"):
        enqueue_sample(spool, sample_message)
    assert list_files(spool.queue_dir) == []


def age(path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_recover_removes_only_old_incomplete_writes(spool, sample_message, list_files):
    complete = enqueue_sample(spool, sample_message)
    old_orphan, young_orphan, lost_message = new_queue_id(), new_queue_id(), new_queue_id()
    files = {
        "old_msg": spool.queue_dir / f"{old_orphan}.eml",
        "young_msg": spool.queue_dir / f"{young_orphan}.eml",
        "old_tmp": spool.queue_dir / f".tmp-{old_orphan}.json",
        "lone_env": spool.queue_dir / f"{lost_message}.json",
        "foreign": spool.queue_dir / "README",
    }
    for path in files.values():
        path.write_bytes(b"x")
    for key in ("old_msg", "old_tmp", "lone_env", "foreign"):
        age(files[key], 7200)
    for path in list_files(spool.queue_dir):
        if path.name.startswith(complete):
            age(path, 7200)

    removed = spool.recover()

    assert removed == sorted([files["old_msg"].name, files["old_tmp"].name, files["lone_env"].name])
    remaining = {path.name for path in list_files(spool.queue_dir)}
    assert remaining == {f"{complete}.eml", f"{complete}.json", files["young_msg"].name, "README"}
    assert [entry.queue_id for entry in spool.list()] == [complete]


def test_recover_on_an_empty_spool(spool):
    assert spool.recover() == []
    assert spool.list() == []
