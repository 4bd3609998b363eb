"""``kill -9`` of a process doing appends, flag changes, copies, moves and expunges loses no
acknowledged change and leaves index and files matching after ``reconcile_all``: at random
moments, and at each file operation's edges (just before it, and just after it, before the index
commit). (Several processes sharing a folder: tests/contract/test_mailbox_processes.py.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.store import open_store
from unit.mailbox.mailbox_helpers import ACCOUNT, assert_consistent

WORKER = Path(__file__).with_name("mailbox_worker.py")
ROUNDS = 12
FOLDERS = ("INBOX", "Archive", "Trash")


def _start(url: str, root: Path, mode: str, seed: int, count: int = 0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(WORKER), url, str(root), mode, str(seed), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == b"ready\n", proc.stderr.read() if proc.stderr else first
    return proc


def _lines(proc: subprocess.Popen[bytes]) -> Iterator[list[str]]:
    """The worker's lines (a line cut by the kill is dropped)."""
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


@dataclass
class Acknowledged:
    """What the worker was told was done, and the operation it had started when it was killed."""

    live: set[int] = field(default_factory=set)
    expunged: set[int] = field(default_factory=set)
    flags: dict[int, set[str]] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)  # UID → the Subject that makes the message recognisable
    intent: list[str] = field(default_factory=lambda: [""])

    def read(self, kind: str, values: list[str]) -> None:
        if kind == "I":
            self.intent = values
            return
        self.intent = [""]
        if kind == "A":
            self.live.add(int(values[0]))
            self.tags[int(values[0])] = values[1]
        elif kind == "F":
            self.flags.setdefault(int(values[0]), set()).add(values[1])
        elif kind in ("X", "M"):
            self.expunged.update(map(int, values))
            self.live.difference_update(map(int, values))

    async def check(self, url: str, root: Path) -> None:
        store = await open_store(url)
        try:
            mailboxes = MailboxStore(root, store.mailbox, "mx.example.org", SystemClock())
            await mailboxes.reconcile_all()
            for folder in FOLDERS:
                await assert_consistent(mailboxes, ACCOUNT, folder)
            await self._check_inbox(mailboxes)
            quota = await mailboxes.quota(ACCOUNT)
            everything = [m for name in FOLDERS for m in (await mailboxes.snapshot(ACCOUNT, name)).messages]
            assert (quota.messages_used, quota.storage_used) == (len(everything), sum(m.size for m in everything))
        finally:
            await store.close()

    async def _check_inbox(self, mailboxes: MailboxStore) -> None:
        present = {m.uid: m.flags for m in (await mailboxes.snapshot(ACCOUNT, "INBOX")).messages}
        # The operation in flight may have committed unacknowledged: an expunge can only have removed
        # messages \Deleted by an acknowledged flag change, a move only its message.
        lost = self.live - set(present)
        allowed = ({uid for uid in lost if "\\Deleted" in self.flags.get(uid, ())} if self.intent[0] == "X"
                   else {int(self.intent[1])} if self.intent[0] == "M" else set())
        assert lost <= allowed, f"acknowledged messages lost: {lost - allowed} (in flight: {self.intent})"
        self.live -= lost
        self.expunged |= lost
        assert not self.expunged & set(present), "an acknowledged expunge came back"
        for uid, wanted in self.flags.items():
            if uid in present:
                assert wanted <= present[uid], f"an acknowledged flag change of {uid} was lost"
        bodies = [await mailboxes.read_message(ACCOUNT, "INBOX", uid) for uid in present]
        gone = {f"Subject: {self.tags[uid]}".encode() for uid in self.expunged if uid in self.tags}
        assert not {b.split(b"\r\n", 1)[0] for b in bodies if b} & gone, "an expunged message came back"


async def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    url, root = await _prepared(tmp_path)
    rng, seen = random.Random(12), Acknowledged()
    for round_number in range(ROUNDS):
        proc = _start(url, root, "crash", round_number)
        stop_after = rng.randrange(3, 60)
        for done, (kind, *values) in enumerate(_lines(proc)):
            seen.read(kind, values)
            if done >= stop_after:
                time.sleep(rng.uniform(0, 0.01))  # not a wait for anything: a random point of the next operations
                os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        await seen.check(url, root)
    assert seen.live and seen.expunged  # the rounds did both


KILL_POINTS = [f"{operation}:{when}" for operation in (
    "write_message", "rename_flags", "unlink_messages", "link_messages") for when in ("before", "after")]


@pytest.mark.parametrize("point", KILL_POINTS)
async def test_kill_9_at_each_file_operation_edge(tmp_path: Path, point: str) -> None:
    """The worker kills itself with SIGKILL right before the file operation, or right after it (the
    file change is made and fsync'd, the index commit not yet), on its 4th call."""
    url, root = await _prepared(tmp_path)
    seen = Acknowledged()
    for seed in range(3):
        proc = _start(url, root, f"killat:{point}", seed, 4)
        for kind, *values in _lines(proc):
            seen.read(kind, values)
        assert proc.wait() == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        await seen.check(url, root)
