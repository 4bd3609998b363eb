"""A data directory with real content for the backup-creation tests, made through the real code:
domains and accounts through the admin service, messages through the mailbox store (APPEND with
flags, several folders) and local delivery (a file left in new/), a queued outbound message
through the delivery queue, the server key, a DKIM key file and a TLS file; plus the files a
backup must never store. Also readers of an archive made by the tests."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hardmail.admin.service import AdminService
from hardmail.auth.server_key import load_or_create_server_key
from hardmail.config.schema import Config, PasswordHashSection
from hardmail.core.clock import SystemClock
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.queue import DeliveryQueue
from hardmail.delivery.spool import OutboundSpool
from hardmail.mailbox import MailboxStore
from hardmail.ops.backup.archive import iter_members
from hardmail.ops.backup.manifest import MANIFEST_MEMBER, Manifest
from hardmail.store import open_store
from hardmail.store.ports import Store

CHEAP_HASH = PasswordHashSection(time_cost=1, memory_cost=8192)
PASSWORD = "correct horse battery staple 42"
ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.net"
CUSTOM = "Projects/Été"


def message(n: int, size: int = 0) -> bytes:
    body = f"Message number {n}\r\n".encode() + b"x" * size + b"\r\n"
    return f"From: sender{n}@example.com\r\nSubject: test {n}\r\nMessage-ID: <{n}@example.com>\r\n\r\n".encode() + body


def make_config(data_dir: Path, url: str = "", **sections: Any) -> Config:
    raw: dict[str, Any] = {"server": {"data_dir": str(data_dir), "hostname": "mx.example.org"},
                           "storage": {"url": url}, **sections}
    return Config.model_validate(raw)


@dataclass
class DataDir:
    config: Config
    store: Store
    mailboxes: MailboxStore

    @property
    def path(self) -> Path:
        return self.config.data_dir

    async def close(self) -> None:
        await self.store.close()

    async def append(self, account: str, folder: str, n: int, flags: tuple[str, ...] = ()) -> int:
        result = await self.mailboxes.append(account, folder, message(n), flags)
        return result.uid

    async def deliver(self, account: str, n: int) -> Path:
        """Local delivery: the file in INBOX's new/, then indexed (as the server does)."""
        [path] = MaildirStore(self.config.maildir_root, "mx.example.org").deliver([account], message(n))
        await self.mailboxes.deliver_indexed(account, "INBOX", [path])
        return path

    async def enqueue(self, n: int) -> str:
        queue = DeliveryQueue(self.store.queue, OutboundSpool(self.config.spool_dir), SystemClock())
        return await queue.enqueue(ALICE, [f"friend{n}@remote.example"], message(n), origin_account=ALICE,
                                   notify=False)


async def build_data_dir(data_dir: Path, url: str = "") -> DataDir:
    """Three accounts in two domains, 17 messages in five folders (one with a non-ASCII name),
    one delivered message still in new/, one queued message, keys, and never-stored clutter."""
    config = make_config(data_dir, url)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = await open_store(config.database_url)
    await store.migrate()
    mailboxes = build_mailbox_store(config, store, SystemClock())
    admin = AdminService(store, CHEAP_HASH, mailboxes=mailboxes)
    for domain in ("example.org", "example.net"):
        await admin.add_domain(domain)
    for account in (ALICE, BOB, CAROL):
        await admin.add_account(account, PASSWORD)
    made = DataDir(config, store, mailboxes)
    await mailboxes.create_folder(ALICE, CUSTOM)
    plan = [(ALICE, "INBOX", ("\\Seen",)), (ALICE, "INBOX", ()), (ALICE, "INBOX", ("\\Flagged", "$Label1")),
            (ALICE, "INBOX", ("\\Seen", "\\Deleted")), (ALICE, "Archive", ("\\Seen", "\\Answered")),
            (ALICE, "Archive", ()), (ALICE, CUSTOM, ("\\Draft",)), (ALICE, CUSTOM, ("\\Seen",)),
            (BOB, "INBOX", ()), (BOB, "INBOX", ("\\Seen",)), (BOB, "Junk", ()), (CAROL, "Sent", ("\\Seen",)),
            (CAROL, "Sent", ("\\Seen",)), (CAROL, "INBOX", ()), (CAROL, "INBOX", ()), (BOB, "Trash", ("\\Seen",)),
            (ALICE, "Archive", ("\\Seen",))]
    for n, (account, folder, flags) in enumerate(plan, start=1):
        await made.append(account, folder, n, flags)
    await made.deliver(BOB, 100)
    await made.enqueue(200)
    load_or_create_server_key(data_dir)
    _write(data_dir / "dkim" / "example.org" / "state.json", b'{"generations": []}\n')
    _write(data_dir / "tls" / "self-signed.pem", b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    _clutter(config)
    return made


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    path.chmod(0o600)


NEVER_STORED = ("incoming/partial-1", "run/worker-0.json", "hardmail.lock",
                "mail/example.org/alice/tmp/1700000000.M1P1Q1.mx,S=3", "spool/queue/.tmp-ABCDEFGHIJKL.eml",
                "backup-state/health.json")


def _clutter(config: Config) -> None:
    for rel in NEVER_STORED:
        _write(config.data_dir / rel, b"not for the backup\n")


# --- reading what a test made ----------------------------------------------------------------

def archive_members(archive: Path, identities: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every member of ``archive`` with its bytes (small test archives only)."""
    return {info.name: stream.read() for info, stream in iter_members(archive, identities)}


def manifest_of(members: dict[str, bytes]) -> Manifest:
    return Manifest.from_json(members[MANIFEST_MEMBER])


def database_copy(members: dict[str, bytes], into: Path) -> sqlite3.Connection:
    path = into / "copy.db"
    path.write_bytes(members["database/hardmail.db"])
    return sqlite3.connect(path)


def message_files(data_dir: Path) -> Iterator[Path]:
    for sub in ("cur", "new"):
        yield from (data_dir / "mail").glob(f"*/*/{sub}/*")
        yield from (data_dir / "mail").glob(f"*/*/.*/{sub}/*")


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def json_lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line]


def indexed_messages(connection: sqlite3.Connection) -> set[tuple[str, str]]:
    """(folder directory under files/, base name) of every index row of a database copy."""
    from hardmail.ops.backup.snapshot import IndexView

    view = IndexView()
    for row in connection.execute("SELECT id, account, name, uidnext, highestmodseq FROM mailbox_folders"):
        view.add_folder(*row)
    found = set()
    for folder_id, name in connection.execute("SELECT folder_id, name FROM mailbox_messages"):
        found.add((f"files/{view.folders[folder_id].directory}", name))
    return found


def archived_messages(manifest: Manifest) -> set[tuple[str, str]]:
    """(folder directory, base name) of every message file a manifest lists."""
    found = set()
    for entry in manifest.files:
        folder, _, name = entry.path.rpartition("/")
        parent, _, sub = folder.rpartition("/")
        if entry.path.startswith("files/mail/") and sub in ("cur", "new"):
            found.add((parent, name.partition(":2,")[0]))
    return found


def assert_consistent(manifest: Manifest, connection: sqlite3.Connection) -> None:
    """What verify checks of the mailbox: every index row has its file, every file its row, and
    the folder counters and the account usage add up."""
    assert indexed_messages(connection) == archived_messages(manifest)
    for folder_id, messages, size, unseen, deleted in connection.execute(
            "SELECT id, messages, size, unseen, deleted FROM mailbox_folders"):
        rows = list(connection.execute("SELECT size, flags FROM mailbox_messages WHERE folder_id = ?", (folder_id,)))
        assert messages == len(rows)
        assert size == sum(r[0] for r in rows)
        assert unseen == sum("\\Seen" not in r[1].split() for r in rows)
        assert deleted == sum("\\Deleted" in r[1].split() for r in rows)
    for account, used, count in connection.execute("SELECT account, storage_used, messages_used FROM mailbox_accounts"):
        total = connection.execute(
            "SELECT COALESCE(SUM(m.size), 0), COUNT(*) FROM mailbox_messages m JOIN mailbox_folders f "
            "ON f.id = m.folder_id WHERE f.account = ?", (account,)).fetchone()
        assert (used, count) == tuple(total)
