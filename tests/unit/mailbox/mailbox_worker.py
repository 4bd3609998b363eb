"""A process that works on one account's INBOX, for the crash and concurrency tests.

``python mailbox_worker.py DB_URL MAILDIR_ROOT MODE SEED COUNT`` prints ``ready``, then one line
per acknowledged operation (``A <uid>``, ``F <uid> <flag>``, ``X <uid>...``), flushed before the
next operation starts. MODE ``crash`` runs until killed; ``killat:<operation>:<before|after>`` too, and
kills itself at the COUNT-th call of that file operation; ``append`` appends and delivers COUNT
messages; ``churn`` flags and expunges COUNT times.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

from hardmail.core.clock import SystemClock
from hardmail.delivery.maildir import MaildirStore
from hardmail.mailbox import MailboxStore, files
from hardmail.store import open_store

ACCOUNT = "alice@example.org"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def crash_loop(mailboxes: MailboxStore, rng: random.Random) -> None:
    """Before each operation ``I <kind> [<uid>]`` (the intent), after it the acknowledgement."""
    uids: list[int] = [m.uid for m in (await mailboxes.snapshot(ACCOUNT, "INBOX")).messages]
    while True:
        roll = rng.random()
        if roll < 0.45 or not uids:
            tag = rng.randrange(10**12)
            say("I A")
            result = await mailboxes.append(ACCOUNT, "INBOX", b"Subject: %d\r\n\r\n" % tag
                                            + b"x" * rng.randrange(2000))
            uids.append(result.uid)
            say(f"A {result.uid} {tag}")
        elif roll < 0.7:
            uid, flag = rng.choice(uids), rng.choice(["\\Seen", "\\Flagged", "\\Deleted", "$Label"])
            say(f"I F {uid}")
            await mailboxes.store_flags(ACCOUNT, "INBOX", [uid], "add", [flag])
            say(f"F {uid} {flag}")
        elif roll < 0.8:
            uid = rng.choice(uids)
            say(f"I M {uid}")
            moved = await mailboxes.move(ACCOUNT, "INBOX", [uid], rng.choice(["Archive", "Trash"]))
            uids.remove(uid)
            say("M " + " ".join(str(old) for old, _ in moved.pairs))
        elif roll < 0.85:
            uid = rng.choice(uids)
            say(f"I C {uid}")
            await mailboxes.copy(ACCOUNT, "INBOX", [uid], "Archive")
            say(f"C {uid}")
        else:
            say("I X")
            removed = await mailboxes.expunge(ACCOUNT, "INBOX")
            uids = [uid for uid in uids if uid not in removed]
            say("X " + " ".join(map(str, removed)))


async def append_loop(mailboxes: MailboxStore, root: Path, count: int) -> None:
    delivery = MaildirStore(root, "mx.example.org")
    for i in range(count):
        if i % 2:
            paths = await asyncio.to_thread(delivery.deliver, [ACCOUNT], b"Subject: delivered %d\r\n\r\nhi\r\n" % i)
            uids = await mailboxes.deliver_indexed(ACCOUNT, "INBOX", paths)
        else:
            uids = [(await mailboxes.append(ACCOUNT, "INBOX", b"Subject: appended %d\r\n\r\nhi\r\n" % i)).uid]
        say("A " + " ".join(map(str, uids)))


async def churn_loop(mailboxes: MailboxStore, rng: random.Random, count: int) -> None:
    for _ in range(count):
        snapshot = await mailboxes.sync(ACCOUNT, "INBOX", claim_recent=False)
        uids = [m.uid for m in snapshot.messages]
        if not uids:
            await asyncio.sleep(0)
            continue
        chosen = rng.sample(uids, min(len(uids), 3))
        flag = rng.choice(["\\Seen", "\\Deleted", "$Label"])
        await mailboxes.store_flags(ACCOUNT, "INBOX", chosen, rng.choice(["add", "remove"]), [flag])
        removed = await mailboxes.expunge(ACCOUNT, "INBOX", chosen if rng.random() < 0.5 else None)
        say("X " + " ".join(map(str, removed)))


def kill_at(point: str, nth: int) -> None:
    """Replace ``hardmail.mailbox.files.<operation>`` so that its ``nth`` call SIGKILLs this process
    ``before`` it runs or ``after`` it returned (its file change done, the index commit not yet)."""
    operation, when = point.split(":")
    original = getattr(files, operation)
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if calls[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(files, operation, wrapper)


async def main(url: str, root: Path, mode: str, seed: int, count: int) -> None:
    store = await open_store(url)
    mailboxes = MailboxStore(root, store.mailbox, "mx.example.org", SystemClock())
    say("ready")
    try:
        if mode.startswith("killat:"):
            kill_at(mode.partition(":")[2], count)
            await crash_loop(mailboxes, random.Random(seed))
        elif mode == "crash":
            await crash_loop(mailboxes, random.Random(seed))
        elif mode == "append":
            await append_loop(mailboxes, root, count)
        else:
            await churn_loop(mailboxes, random.Random(seed), count)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
