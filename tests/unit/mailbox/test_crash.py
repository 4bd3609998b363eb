"""``kill -9`` at random points of appends, flag changes and expunges loses no acknowledged change
and leaves index and files matching after ``reconcile_all``. (Several processes sharing a folder:
tests/contract/test_mailbox_processes.py, on every backend.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.store import open_store
from unit.mailbox.mailbox_helpers import ACCOUNT, assert_consistent

WORKER = Path(__file__).with_name("mailbox_worker.py")
ROUNDS = 12


def _start(url: str, root: Path, mode: str, seed: int, count: int = 0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(WORKER), url, str(root), mode, str(seed), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
    return proc


def _lines(proc: subprocess.Popen[bytes]) -> Iterator[list[str]]:
    """The worker's acknowledged operations, one per line (a line cut by the kill is dropped)."""
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        if raw.endswith(b"\n"):
            yield raw.decode().split()


async def _prepared(tmp_path: Path) -> tuple[str, Path]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hardmail.db'}"
    store = await open_store(url)
    await store.migrate()
    root = tmp_path / "mail"
    await MailboxStore(root, store.mailbox, "mx.example.org", SystemClock()).ensure_account(ACCOUNT)
    await store.close()
    return url, root


async def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    url, root = await _prepared(tmp_path)
    rng = random.Random(12)
    live: set[int] = set()
    expunged: set[int] = set()
    flags: dict[int, set[str]] = {}
    tags: dict[int, str] = {}  # UID → the Subject that makes the message recognisable
    for round_number in range(ROUNDS):
        proc = _start(url, root, "crash", round_number)
        stop_after = rng.randrange(3, 60)
        for done, (kind, *values) in enumerate(_lines(proc)):
            if kind == "A":
                live.add(int(values[0]))
                tags[int(values[0])] = values[1]
            elif kind == "F":
                flags.setdefault(int(values[0]), set()).add(values[1])
            else:
                expunged.update(map(int, values))
                live.difference_update(map(int, values))
            if done >= stop_after:
                time.sleep(rng.uniform(0, 0.03))  # not a wait for anything: a random point of the next operations
                os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        store = await open_store(url)
        try:
            mailboxes = MailboxStore(root, store.mailbox, "mx.example.org", SystemClock())
            await mailboxes.reconcile_all()
            await assert_consistent(mailboxes, ACCOUNT, "INBOX")
            snapshot = await mailboxes.snapshot(ACCOUNT, "INBOX")
            present = {m.uid: m.flags for m in snapshot.messages}
            # The operation in flight at the kill may have been an expunge that committed unacknowledged:
            # it can only have removed messages that were \Deleted by an acknowledged flag change.
            lost = live - set(present)
            assert all("\\Deleted" in flags.get(uid, ()) for uid in lost), f"acknowledged appends lost: {lost}"
            live -= lost
            assert not expunged & set(present), "an acknowledged expunge came back"
            for uid, wanted in flags.items():
                if uid in present:
                    assert wanted <= present[uid], f"an acknowledged flag change of {uid} was lost"
            subjects = [await mailboxes.read_message(ACCOUNT, "INBOX", uid) for uid in present]
            gone = {f"Subject: {tags[uid]}".encode() for uid in expunged if uid in tags}
            assert not {s.split(b"\r\n", 1)[0] for s in subjects if s} & gone, "an expunged message came back"
            quota = await mailboxes.quota(ACCOUNT)
            assert quota.messages_used == len(present)
            assert quota.storage_used == sum(m.size for m in snapshot.messages)
        finally:
            await store.close()
    assert live and expunged  # the rounds did both
