"""The checks of a backup archive's contents, part of :mod:`hardmail.ops.backup.verify` (which
reads the archives): the database copy opened and checked, and the mailbox index and the
outbound queue compared with the files the archive restores.

- the database: an SQLite copy passes ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``
  and is at the manifest's schema revision; every line of a PostgreSQL logical export is a JSON
  object, and ``pg_restore --list`` reads ``postgres.dump`` (when pg_restore is installed);
- every message of the mailbox index has its file under ``files/mail/<domain>/<local>/
  [.Folder/](cur|new)/`` (matched by folder directory and base name before ``:2,``, the
  directories named as the mailbox store names them) and every message file its index entry;
  every queue entry has its spool message and envelope, and every envelope its queue entry.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.spool import is_queue_id
from hardmail.mailbox import names
from hardmail.mailbox.files import INFO_SEPARATOR
from hardmail.ops.backup.manifest import FileEntry, Manifest
from hardmail.store.sql.migrate import effective_revision

_MAX_DATABASE_LINES = 20
_SPOOL_QUEUE = "files/spool/queue/"


class Failures(Protocol):
    def add(self, subject: str, problem: str, kind: str | None = None) -> None: ...


# --- the database and the index --------------------------------------------------------------

@dataclass
class _Contents:
    """What the database says is there: message rows and queue ids."""

    messages: list[tuple[str, str, str, int]] = field(default_factory=list)  # account, folder, base, uid
    queue_ids: set[str] = field(default_factory=set)
    indexed: bool = False  # the database has a mailbox index (revisions before it have none)


def check_contents(manifest: Manifest, extracted: Path, failures: Failures) -> int:
    member = manifest.database.member
    if manifest.database.kind == "sqlite":
        contents = _check_sqlite(extracted / member, member, manifest.schema_revision, failures)
    else:
        contents = _check_logical(extracted / member, member, failures)
        _check_dump(extracted, manifest.database.dump_member, failures)
    if contents is None:
        return 0
    if contents.indexed:
        _check_index(manifest.files, contents.messages, failures)
    _check_queue(manifest.files, contents.queue_ids, failures)
    return len(contents.messages)


def _check_sqlite(path: Path, member: str, revision: str | None, failures: Failures) -> _Contents | None:
    if not path.is_file():
        failures.add(member, "the database copy is not in the archive", "the database copy is missing")
        return None
    try:
        connection = sqlite3.connect(path)
    except sqlite3.Error as exc:
        failures.add(member, f"cannot be opened ({exc})", "the database copy cannot be opened")
        return None
    try:
        return _sqlite_contents(connection, member, revision, failures)
    except sqlite3.DatabaseError as exc:
        failures.add(member, f"is not a usable SQLite database ({exc})", "the database copy is damaged")
        return None
    finally:
        connection.close()


def _sqlite_contents(connection: sqlite3.Connection, member: str, revision: str | None,
                     failures: Failures) -> _Contents:
    problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        for problem in problems[:_MAX_DATABASE_LINES]:
            failures.add(member, f"integrity check: {problem}", "the database copy fails its integrity check")
    for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check").fetchmany(_MAX_DATABASE_LINES):
        failures.add(member, f"foreign key check: row {rowid} of {table} refers to a missing row of {parent}",
                     "the database copy fails its foreign key check")
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    found = effective_revision([row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]) \
        if "alembic_version" in tables else None
    if found != effective_revision([part for part in (revision or "").split(",") if part]):
        failures.add(member, f"is at schema revision {found}, the manifest says {revision}",
                     "the database copy is not at the manifest's schema revision")
    contents = _Contents(indexed={"mailbox_messages", "mailbox_folders"} <= tables)
    if contents.indexed:
        contents.messages = connection.execute(  # the rows as they are: a value of another type matches nothing
            "SELECT f.account, f.name, m.name, m.uid FROM mailbox_messages m "
            "JOIN mailbox_folders f ON f.id = m.folder_id").fetchall()
    if "queue_messages" in tables:
        contents.queue_ids = {str(row[0]) for row in connection.execute("SELECT queue_id FROM queue_messages")}
    return contents


def _check_logical(tables: Path, member: str, failures: Failures) -> _Contents | None:
    files = sorted(tables.glob("*.jsonl")) if tables.is_dir() else []
    if not files:
        failures.add(member, "the logical export of the database is not in the archive", "the database copy is missing")
        return None
    rows: dict[str, list[dict[str, Any]]] = {"mailbox_folders": [], "mailbox_messages": [], "queue_messages": []}
    for path in files:
        kept = rows.get(path.stem)
        for number, row in _json_lines(path, f"{member}/{path.name}", failures):
            if kept is None:
                continue
            if _has(row, path.stem):
                kept.append(row)
            else:
                failures.add(f"{member}/{path.name} line {number}", "a row without its key columns",
                             "a logical export line lacks its key columns")
    contents = _Contents(indexed=(tables / "mailbox_folders.jsonl").is_file())
    folders = {row["id"]: (str(row["account"]), str(row["name"])) for row in rows["mailbox_folders"]}
    for row in rows["mailbox_messages"]:
        account, folder = folders.get(row["folder_id"], ("?", "?"))
        contents.messages.append((account, folder, str(row["name"]), int(row["uid"])))
    contents.queue_ids = {str(row["queue_id"]) for row in rows["queue_messages"]}
    return contents


_KEY_COLUMNS = {"mailbox_folders": ("id", "account", "name"), "mailbox_messages": ("folder_id", "name", "uid"),
                "queue_messages": ("queue_id",)}


def _has(row: dict[str, Any], table: str) -> bool:
    return all(column in row for column in _KEY_COLUMNS[table])


def _json_lines(path: Path, shown: str, failures: Failures) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                failures.add(f"{shown} line {number}", "is not a JSON object", "a logical export line does not parse")
                continue
            yield number, row


def _check_dump(extracted: Path, dump_member: str | None, failures: Failures) -> None:
    if not dump_member or shutil.which("pg_restore") is None:
        return
    dump = extracted / dump_member
    if not dump.is_file():
        return  # missing members are reported against the manifest
    done = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        failures.add(dump_member, f"pg_restore cannot read it ({reason})", "pg_restore cannot read the dump")


def _check_index(entries: Sequence[FileEntry], messages: list[tuple[str, str, str, int]], failures: Failures) -> None:
    """Every index row has its message file, every message file its index row. (The directory
    of each account and folder is worked out once, not once per message.)"""
    folders: dict[str, bool] = {}
    files = {key: entry.path for entry in entries if (key := _file_key(entry.path, folders)) is not None}
    maildirs = MaildirStore(Path("/"), "verify")
    places: dict[tuple[str, str], tuple[str, str, str] | None] = {}
    indexed = set()
    for account, folder, base, uid in messages:
        if (account, folder) not in places:
            places[(account, folder)] = _index_place(maildirs, account, folder)
        place = places[(account, folder)]
        if place is None:
            failures.add(f"index entry {account} {folder} UID {uid}", "its account or folder name has no directory",
                         "an index entry names no directory")
            continue
        key = (*place, base)
        indexed.add(key)
        if key not in files:
            where = "/".join(part for part in ("files/mail", *place) if part)
            failures.add(f"index entry {account} {folder} UID {uid}",
                         f"its message file {where}/(cur|new)/{base} is not in the archive",
                         "an index entry has no message file")
    for key, path in files.items():
        if key not in indexed:
            failures.add(path, "message file has no index entry", "a message file has no index entry")


def _file_key(path: str, folders: dict[str, bool]) -> tuple[str, ...] | None:
    """(domain dir, local dir, folder dir, base name) of a message file entry (as
    ``restore.is_message_path`` tells them); ``folders``: whether each folder directory is one the
    server made, as found so far."""
    parts = path.split("/")
    if len(parts) not in (6, 7) or parts[0] != "files" or parts[1] != "mail" or parts[-1].startswith(".") \
            or parts[-2] not in ("cur", "new"):
        return None
    folder = ""
    if len(parts) == 7:
        folder = parts[4]
        if folder not in folders:  # not one the server made: a deleted folder's trash, another program's
            folders[folder] = folder.startswith(".") and names.name_of_dirname(folder) is not None
        if not folders[folder]:
            return None
    return parts[2], parts[3], folder, parts[-1].partition(INFO_SEPARATOR)[0]


def _index_place(maildirs: MaildirStore, account: str, folder: str) -> tuple[str, str, str] | None:
    """(domain dir, local dir, folder dir) of an index entry's folder, None when it has none."""
    if not isinstance(account, str) or not isinstance(folder, str):
        return None  # a damaged row
    try:
        directory = PurePosixPath(maildirs.mailbox_path(account))
        canonical = names.normalize(folder)
    except ValueError:
        return None
    return directory.parts[-2], directory.parts[-1], names.dirname(canonical)


def _check_queue(entries: Sequence[FileEntry], queue_ids: set[str], failures: Failures) -> None:
    spooled: dict[str, set[str]] = {}
    for entry in entries:
        if entry.path.startswith(_SPOOL_QUEUE) and "/" not in entry.path[len(_SPOOL_QUEUE):]:
            stem, _, suffix = entry.path[len(_SPOOL_QUEUE):].rpartition(".")
            if is_queue_id(stem) and suffix in ("eml", "json"):
                spooled.setdefault(stem, set()).add(suffix)
    for queue_id in sorted(queue_ids):
        have = spooled.get(queue_id, set())
        for suffix, what in (("eml", "message"), ("json", "envelope")):
            if suffix not in have:
                failures.add(f"queue entry {queue_id}", f"its spool {what} {_SPOOL_QUEUE}{queue_id}.{suffix} is not in "
                             "the archive", f"a queue entry has no spool {what}")
    for queue_id, have in sorted(spooled.items()):
        if "json" in have and queue_id not in queue_ids:
            failures.add(f"{_SPOOL_QUEUE}{queue_id}.json", "spool entry has no queue entry in the database",
                         "a spool entry has no queue entry")
