"""Contract: several processes appending, delivering, flagging and expunging one folder on the
same database (SQLite file, PostgreSQL) leave a consistent index: every message its own UID, each
expunged once, counters and usage matching the files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import delete

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.store.ports import Store
from hardmail.store.sql.tables_mailbox import (
    mailbox_accounts,
    mailbox_changes,
    mailbox_folders,
    mailbox_messages,
    mailbox_subscriptions,
    mailbox_vanished,
)
from unit.mailbox.mailbox_helpers import ACCOUNT, assert_consistent

WORKER = Path(__file__).parents[1] / "unit" / "mailbox" / "mailbox_worker.py"


def _start(url: str, root: Path, mode: str, seed: int, count: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(WORKER), url, str(root), mode, str(seed), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


async def test_processes_share_one_folder(store: Store, store_url: str, tmp_path: Path) -> None:
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table in (mailbox_changes, mailbox_subscriptions, mailbox_vanished, mailbox_messages,
                      mailbox_folders, mailbox_accounts):
            await conn.execute(delete(table))
    root = tmp_path / "mail"
    mailboxes = MailboxStore(root, store.mailbox, "mx.example.org", SystemClock())
    await mailboxes.ensure_account(ACCOUNT)
    procs = [_start(store_url, root, "append", 0, 60), _start(store_url, root, "append", 9, 60)] + [
        _start(store_url, root, "churn", seed, 30) for seed in (1, 2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        outputs.append([[int(uid) for uid in line.split()[1:]] for line in out.decode().splitlines()])
    appended = [uid for output in outputs[:2] for line in output for uid in line]
    removed = [[uid for line in output for uid in line] for output in outputs[2:]]
    assert len(appended) == 120 and len(set(appended)) == 120
    assert not set(removed[0]) & set(removed[1])
    await mailboxes.sync(ACCOUNT, "INBOX")
    await assert_consistent(mailboxes, ACCOUNT, "INBOX")
    present = {m.uid for m in (await mailboxes.snapshot(ACCOUNT, "INBOX")).messages}
    assert present == set(appended) - set(removed[0]) - set(removed[1])
    quota = await mailboxes.quota(ACCOUNT)
    assert quota.messages_used == len(present)
