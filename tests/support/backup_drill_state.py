"""What the restore drill compares before the wipe and after the restore: every folder of every
mailbox as a real IMAP client sees it (UIDVALIDITY, UIDNEXT, and per message its UID, flags,
INTERNALDATE and bytes), the settings as the CLI prints them, and the key files; plus the load
client that keeps sending over SMTP while a backup runs and counts every message that got 250.
"""

from __future__ import annotations

import hashlib
import imaplib
import re
import smtplib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.backup_drill import (
    ACCOUNTS,
    DKIM_DOMAINS,
    DOMAINS,
    LOAD_TARGET,
    MAILBOX_ACCOUNTS,
    OUTSIDE_SENDER,
    WAIT,
    Credentials,
    DrillServer,
    message,
    wait_until,
)

_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
_STATUS = re.compile(rb"(UIDVALIDITY|UIDNEXT|MESSAGES) (\d+)")
_META = re.compile(rb"^(\d+) \(.*?UID (\d+).*?FLAGS \(([^)]*)\).*?INTERNALDATE \"([^\"]+)\"|"
                   rb"^(\d+) \(.*?INTERNALDATE \"([^\"]+)\".*?UID (\d+).*?FLAGS \(([^)]*)\)")
_LOAD_ID = re.compile(rb"^Message-ID: <load-(\d+)@drill\.test>", re.MULTILINE | re.IGNORECASE)
MAX_LOAD = 3000  # messages the load client sends at most (a slow machine's backup takes longer)
VOLATILE = frozenset({"last_login", "last_used_at", "last_used_ip"})  # logins after the last backup move them


@dataclass(frozen=True)
class MessageState:
    uid: int
    flags: tuple[str, ...]  # sorted, without the session flag \Recent
    internaldate: str
    body: bytes


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int
    messages: tuple[MessageState, ...]  # by UID


Mailboxes = dict[str, dict[str, FolderState]]  # address → folder name → state


def _folder_names(client: imaplib.IMAP4_SSL) -> list[str]:
    status, items = client.list('""', '"*"')
    assert status == "OK", items
    names = []
    for item in items:
        line, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        assert isinstance(line, bytes), items
        found = _LIST.match(line)
        assert found, f"unparsed LIST line {line!r}"
        if b"\\noselect" in found.group("attrs").lower() or b"\\nonexistent" in found.group("attrs").lower():
            continue
        name = literal if literal is not None else found.group("name")
        if name.startswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        names.append(name.decode())
    return sorted(names)


def _folder_state(client: imaplib.IMAP4_SSL, name: str) -> FolderState:
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    status, data = client.status(quoted, "(UIDVALIDITY UIDNEXT MESSAGES)")
    assert status == "OK", data
    assert isinstance(data[0], bytes), data
    values = {key.decode(): int(value) for key, value in _STATUS.findall(data[0])}
    status, data = client.select(quoted, readonly=True)  # EXAMINE: nothing changes, \Recent stays
    assert status == "OK" and data[0] is not None, data
    count = int(data[0])
    assert count == values["MESSAGES"], (name, count, values)
    messages: tuple[MessageState, ...] = ()
    if count:
        meta = _meta(client, count)
        bodies = _bodies(client, count)
        found = (MessageState(uid, flags, date, bodies[seq]) for seq, (uid, flags, date) in meta.items())
        messages = tuple(sorted(found, key=lambda m: m.uid))
    return FolderState(values["UIDVALIDITY"], values["UIDNEXT"], messages)


def _meta(client: imaplib.IMAP4_SSL, count: int) -> dict[int, tuple[int, tuple[str, ...], str]]:
    status, data = client.fetch(f"1:{count}", "(UID FLAGS INTERNALDATE)")
    assert status == "OK", data
    meta = {}
    for line in data:
        assert isinstance(line, bytes), line
        found = _META.match(line)
        assert found, f"unparsed FETCH line {line!r}"
        if found.group(1):
            seq, uid, flags, date = found.group(1, 2, 3, 4)
        else:
            seq, date, uid, flags = found.group(5, 6, 7, 8)
        kept = tuple(sorted(f for f in flags.decode().split() if f.lower() != "\\recent"))
        meta[int(seq)] = (int(uid), kept, date.decode())
    assert sorted(meta) == list(range(1, count + 1)), sorted(meta)
    return meta


def _bodies(client: imaplib.IMAP4_SSL, count: int) -> dict[int, bytes]:
    status, data = client.fetch(f"1:{count}", "(BODY.PEEK[])")
    assert status == "OK", data
    bodies = {int(item[0].split()[0]): item[1] for item in data if isinstance(item, tuple)}
    assert sorted(bodies) == list(range(1, count + 1)), sorted(bodies)
    return bodies


def snapshot_mailboxes(server: DrillServer, credentials: Credentials) -> Mailboxes:
    """Every folder of every mailbox, as a real IMAP client (imaplib over TLS) sees it."""
    mailboxes: Mailboxes = {}
    for account in MAILBOX_ACCOUNTS:
        with server.imap(account.address, credentials.mail_password(account)) as client:
            mailboxes[account.address] = {name: _folder_state(client, name) for name in _folder_names(client)}
    return mailboxes


def count_messages(mailboxes: Mailboxes) -> int:
    return sum(len(folder.messages) for folders in mailboxes.values() for folder in folders.values())


def differences(before: Mailboxes, after: Mailboxes, limit: int = 20) -> list[str]:
    """What an IMAP client would notice, one line each (at most ``limit``)."""
    found: list[str] = []
    for address in sorted(set(before) | set(after)):
        old, new = before.get(address, {}), after.get(address, {})
        if set(old) != set(new):
            found.append(f"{address}: folders {sorted(old)} became {sorted(new)}")
        for name in sorted(set(old) & set(new)):
            found += _folder_differences(f"{address} {name}", old[name], new[name])
    return found[:limit]


def _folder_differences(where: str, old: FolderState, new: FolderState) -> Iterator[str]:
    if old.uidvalidity != new.uidvalidity:
        yield f"{where}: UIDVALIDITY {old.uidvalidity} became {new.uidvalidity} (clients download everything again)"
    if new.uidnext < old.uidnext:
        yield f"{where}: UIDNEXT went back from {old.uidnext} to {new.uidnext} (UIDs would be used twice)"
    old_by, new_by = {m.uid: m for m in old.messages}, {m.uid: m for m in new.messages}
    for uid in sorted(set(old_by) - set(new_by)):
        yield f"{where}: UID {uid} is missing"
    for uid in sorted(set(new_by) - set(old_by)):
        yield f"{where}: UID {uid} is new"
    for uid in sorted(set(old_by) & set(new_by)):
        a, b = old_by[uid], new_by[uid]
        if a.flags != b.flags:
            yield f"{where}: UID {uid} flags {a.flags} became {b.flags}"
        if a.internaldate != b.internaldate:
            yield f"{where}: UID {uid} INTERNALDATE {a.internaldate} became {b.internaldate}"
        if a.body != b.body:
            yield f"{where}: UID {uid} bytes differ ({len(a.body)} bytes became {len(b.body)})"


def load_numbers(bodies: Iterable[bytes]) -> set[int]:
    """The numbers of the load client's messages among ``bodies``."""
    return {int(found.group(1)) for body in bodies for found in [_LOAD_ID.search(body)] if found}


def mailbox_bodies(mailboxes: Mailboxes, address: str) -> list[bytes]:
    return [m.body for folder in mailboxes[address].values() for m in folder.messages]


def maildir_bodies(data_dir: Path, address: str) -> list[bytes]:
    """The message files of an account's Maildir (every folder; ``tmp/`` left out)."""
    local, _, domain = address.partition("@")
    root = data_dir / "mail" / domain / local
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and p.parent.name in ("cur", "new")]


# --- settings and key files --------------------------------------------------------------------

def _without_volatile(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_volatile(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    return value


def settings_snapshot(server: DrillServer, credentials: Credentials) -> dict[str, Any]:
    """The settings as the CLI prints them (login times left out: logins after a backup move them)."""
    shown: dict[str, Any] = {
        "domains": server.cli_json("domain", "list"),
        "accounts": server.cli_json("account", "list"),
        "aliases": server.cli_json("alias", "list"),
        "ranges": server.cli_json("range", "list"),
        "queue": server.cli_json("queue", "list"),
    }
    for domain in DKIM_DOMAINS:
        shown[f"dkim {domain}"] = server.run("dkim", "show", domain)[1]
    for address in credentials.two_factor:
        shown[f"app passwords {address}"] = server.cli_json("account", "app-password", "list", address)
    for account in MAILBOX_ACCOUNTS:
        shown[f"folders {account.address}"] = server.cli_json("mailbox", "list", account.address)
        shown[f"quota {account.address}"] = server.cli_json("mailbox", "quota", account.address)
    assert len(shown["domains"]) == len(DOMAINS) and len(shown["accounts"]) == len(ACCOUNTS), shown
    kept: dict[str, Any] = _without_volatile(shown)
    return kept


def key_files(data_dir: Path) -> dict[str, str]:
    """SHA-256 of the server key, the DKIM keys and the TLS certificate and key, by relative path."""
    paths = [data_dir / "server.key", *(data_dir / "dkim").rglob("*"), *(data_dir / "tls").rglob("*")]
    return {str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


# --- the load client ---------------------------------------------------------------------------

class LoadClient:
    """A thread sending to LOAD_TARGET over the MX port, one session reused, until stopped; every
    message that got 250 to its DATA is counted (``acked``), refusals and errors kept apart."""

    def __init__(self, server: DrillServer) -> None:
        self.server = server
        self.acked: list[int] = []
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="load-client", daemon=True)

    def __enter__(self) -> LoadClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def wait_for(self, count: int) -> None:
        wait_until(lambda: self.count() >= count or not self._thread.is_alive(), f"{count} load messages accepted")
        assert self.count() >= count, f"the load client ended: {self.failed[-3:]}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive(), "the load client did not stop"

    def _run(self) -> None:
        number = 0
        while not self._stop.is_set() and number < MAX_LOAD:
            try:
                with smtplib.SMTP("127.0.0.1", self.server.ports.smtp, timeout=WAIT) as client:
                    client.ehlo("load.outside.test")
                    while not self._stop.is_set() and number < MAX_LOAD:
                        number += 1
                        client.sendmail(OUTSIDE_SENDER, [LOAD_TARGET], message("load", number, to=LOAD_TARGET))
                        with self._lock:
                            self.acked.append(number)
            except (smtplib.SMTPException, OSError) as exc:  # not acknowledged: not counted
                self.failed.append(f"load {number}: {type(exc).__name__}: {exc}")
                if len(self.failed) > 50:
                    return

