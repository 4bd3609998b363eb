"""Helpers of the mailbox store tests: the test account, and checks of the index against the files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hardmail.core.clock import SystemClock
from hardmail.mailbox import MailboxStore
from hardmail.mailbox.files import split_name
from hardmail.store.ports import Store

ACCOUNT = "alice@example.org"
MESSAGE = b"From: Bob <bob@example.org>\r\nSubject: hello\r\n\r\nHi Alice\r\n"


@dataclass
class Env:
    store: Store
    mailboxes: MailboxStore
    root: Path
    url: str

    def folder_dir(self, name: str = "INBOX") -> Path:
        return self.mailboxes.folder_dir(ACCOUNT, name)

    def other(self) -> MailboxStore:
        return MailboxStore(self.root, self.store.mailbox, "mx.example.org", SystemClock())


def files_on_disk(folder: Path) -> dict[str, str]:
    """base name → "new/<file>" or "cur/<file>" of every message file of a folder."""
    found = {}
    for sub in ("new", "cur"):
        for name in os.listdir(folder / sub):
            found[split_name(name)[0]] = f"{sub}/{name}"
    return found


async def assert_consistent(mailboxes: MailboxStore, account: str, name: str) -> None:
    """Every entry has its file, every file its entry, and the folder's counters add up."""
    snapshot = await mailboxes.snapshot(account, name)
    on_disk = files_on_disk(mailboxes.folder_dir(account, name))
    assert sorted(on_disk) == sorted(m.name for m in snapshot.messages)
    uids = [m.uid for m in snapshot.messages]
    assert uids == sorted(set(uids)) and (not uids or uids[-1] < snapshot.info.uidnext)
    info = snapshot.info
    assert info.messages == len(snapshot.messages)
    assert info.size == sum(m.size for m in snapshot.messages)
    assert info.unseen == sum("\\Seen" not in m.flags for m in snapshot.messages)
    assert info.deleted == sum("\\Deleted" in m.flags for m in snapshot.messages)
    for message in snapshot.messages:
        place = on_disk[message.name]
        if place.startswith("cur/"):
            assert split_name(place[4:])[1] == {f for f in message.flags if f.startswith("\\")}
