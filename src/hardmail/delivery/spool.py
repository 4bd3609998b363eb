"""The durable outbound spool: messages accepted for remote recipients wait here for delivery.

Layout: ``<root>/queue/<queue id>.eml`` (the message as received) and ``<queue id>.json`` (the
envelope). Both are written to temporary names in the same directory and fsync'd; then the
message is renamed, the envelope is renamed last, and the directory is fsync'd once. An entry
exists only when its envelope exists: a message without an envelope is an incomplete write that
:meth:`OutboundSpool.list` ignores and :meth:`OutboundSpool.recover` removes once it is old.

Queue ids are 20 characters of Crockford base32: 10 for the time in milliseconds (so ids sort by
arrival) and 10 random (50 bits). They are safe as file names and in Received headers. A caller
may pass its own id (12 to 40 characters of 0-9 and A-Z, e.g. ``hardmail.core.ids.new_id``).
Everything here is synchronous; async callers run it in a thread.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hardmail.core.ids import new_id
from hardmail.delivery.durable import (
    Chunks,
    as_chunks,
    fsync_dir,
    make_private_dir,
    remove_quietly,
    write_new_file,
)

log = logging.getLogger(__name__)

_QUEUE_ID = re.compile(r"^[0-9A-Z]{12,40}$")
_MESSAGE_SUFFIX = ".eml"
_ENVELOPE_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"
ENVELOPE_VERSION = 1
ORPHAN_AGE = 3600.0  # seconds before an incomplete write is considered abandoned


class SpoolError(Exception):
    """A spool operation failed; the message is safe to show to an admin."""


class QueueIdNotFound(SpoolError):
    pass


@dataclass(frozen=True)
class SpoolEntry:
    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    created_at: float
    size: int
    origin_account: str | None
    meta: dict[str, str] = field(default_factory=dict)


def new_queue_id(now: float | None = None) -> str:
    """A time-sortable, random, file-name-safe queue id (the project's one id format)."""
    return new_id(now)


def is_queue_id(text: str) -> bool:
    return bool(_QUEUE_ID.match(text))


class OutboundSpool:
    """Queue files under ``root/queue``; see the module docstring for layout and guarantees."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.queue_dir = self.root / "queue"

    def enqueue(
        self,
        sender: str,
        recipients: Sequence[str],
        message: Chunks,
        *,
        origin_account: str | None,
        meta: Mapping[str, str] | None = None,
        queue_id: str | None = None,
    ) -> str:
        """Store a message durably and return its queue id (only once it is safely on disk).

        ``queue_id`` lets a caller reuse an id it already logged (12-40 characters, 0-9 and
        upper-case A-Z); an id already in the spool raises SpoolError. By default a new one is made.
        """
        if not recipients:
            raise SpoolError("a spooled message needs at least one recipient")
        queue_id = queue_id or new_queue_id()
        _check_queue_id(queue_id)
        make_private_dir(self.queue_dir)
        message_tmp = self._tmp_path(queue_id, _MESSAGE_SUFFIX)
        envelope_tmp = self._tmp_path(queue_id, _ENVELOPE_SUFFIX)
        try:
            size = write_new_file(message_tmp, list(as_chunks(message)))
            entry = SpoolEntry(queue_id, sender, tuple(recipients), time.time(), size,
                               origin_account, dict(meta or {}))
            write_new_file(envelope_tmp, _envelope_bytes(entry))
            self._publish(queue_id, message_tmp, envelope_tmp)
        except BaseException:
            for path in (envelope_tmp, message_tmp):
                remove_quietly(path)
            raise
        return queue_id

    def _publish(self, queue_id: str, message_tmp: Path, envelope_tmp: Path) -> None:
        """Move the message, then the envelope, into place; then fsync the directory once.

        Until the fsync returns, a crash may leave either name missing; an entry without both
        files is never listed, and the caller has not acknowledged the message yet.
        """
        message_path, envelope_path = self._paths(queue_id)
        _move_no_replace(message_tmp, message_path, queue_id)
        try:
            _move_no_replace(envelope_tmp, envelope_path, queue_id)
            fsync_dir(self.queue_dir)
        except BaseException:
            remove_quietly(envelope_path)
            remove_quietly(message_path)
            raise

    def list(self) -> list[SpoolEntry]:
        """Every complete entry, oldest first; damaged envelopes are logged and skipped."""
        entries = []
        for queue_id in self._envelope_ids():
            try:
                entries.append(self._read_envelope(queue_id))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("spool entry %s skipped: unreadable envelope (%s)", queue_id, exc)
        return entries

    def load(self, queue_id: str) -> tuple[SpoolEntry, bytes]:
        """The envelope and message bytes of one entry; raises QueueIdNotFound."""
        _check_queue_id(queue_id)
        try:
            entry = self._read_envelope(queue_id)
            return entry, self._paths(queue_id)[0].read_bytes()
        except FileNotFoundError:
            raise QueueIdNotFound(f"no spooled message with queue id {queue_id}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolError(f"spool entry {queue_id} has a damaged envelope: {exc}") from None

    def entry(self, queue_id: str) -> SpoolEntry:
        """The envelope of one entry, without reading the message; raises QueueIdNotFound."""
        _check_queue_id(queue_id)
        try:
            return self._read_envelope(queue_id)
        except FileNotFoundError:
            raise QueueIdNotFound(f"no spooled message with queue id {queue_id}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolError(f"spool entry {queue_id} has a damaged envelope: {exc}") from None

    def remove(self, queue_id: str) -> None:
        """Remove an entry (envelope first, so it is never listed half-removed); idempotent."""
        _check_queue_id(queue_id)
        message_path, envelope_path = self._paths(queue_id)
        remove_quietly(envelope_path)
        remove_quietly(message_path)
        if self.queue_dir.is_dir():
            fsync_dir(self.queue_dir)

    def recover(
        self, *, now: float | None = None, max_age: float = ORPHAN_AGE
    ) -> builtins.list[str]:
        """Remove incomplete writes older than ``max_age`` seconds; returns the file names removed.

        Incomplete writes are temporary files, messages without an envelope and envelopes
        without a message (a crash between the two renames, before the message was acknowledged).
        """
        if not self.queue_dir.is_dir():
            return []
        cutoff = (time.time() if now is None else now) - max_age
        complete = set(self._envelope_ids())
        removed = []
        for path in self.queue_dir.iterdir():
            if _is_incomplete(path, complete) and _older_than(path, cutoff):
                remove_quietly(path)
                removed.append(path.name)
        if removed:
            fsync_dir(self.queue_dir)
            log.info("spool recovery removed %d incomplete files", len(removed))
        return sorted(removed)

    def _envelope_ids(self) -> builtins.list[str]:
        """Queue ids that have both an envelope and a message file, oldest first."""
        if not self.queue_dir.is_dir():
            return []
        names = {path.name for path in self.queue_dir.iterdir()}
        ids = [
            name[: -len(_ENVELOPE_SUFFIX)]
            for name in names
            if name.endswith(_ENVELOPE_SUFFIX) and is_queue_id(name[: -len(_ENVELOPE_SUFFIX)])
        ]
        return sorted(qid for qid in ids if qid + _MESSAGE_SUFFIX in names)

    def _read_envelope(self, queue_id: str) -> SpoolEntry:
        data = json.loads(self._paths(queue_id)[1].read_bytes())
        return _entry_from_json(data)

    def _paths(self, queue_id: str) -> tuple[Path, Path]:
        return (
            self.queue_dir / f"{queue_id}{_MESSAGE_SUFFIX}",
            self.queue_dir / f"{queue_id}{_ENVELOPE_SUFFIX}",
        )

    def _tmp_path(self, queue_id: str, suffix: str) -> Path:
        return self.queue_dir / f"{_TMP_PREFIX}{queue_id}{suffix}"


def _check_queue_id(queue_id: str) -> None:
    if not is_queue_id(queue_id):
        raise QueueIdNotFound(f"{queue_id!r} is not a queue id (12-40 characters, 0-9 and A-Z)")


def _move_no_replace(source: Path, target: Path, queue_id: str) -> None:
    """Rename ``source`` to ``target`` but never over an existing entry (link + unlink)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise SpoolError(f"queue id {queue_id} is already in the spool") from None
    os.unlink(source)


def _is_incomplete(path: Path, complete: set[str]) -> bool:
    """True for a temporary file or a message/envelope whose partner file is missing."""
    name = path.name
    if name.startswith(_TMP_PREFIX):
        return True
    stem, _, suffix = name.rpartition(".")
    if not is_queue_id(stem) or f".{suffix}" not in (_MESSAGE_SUFFIX, _ENVELOPE_SUFFIX):
        return False  # not ours: leave it alone
    return stem not in complete


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _envelope_bytes(entry: SpoolEntry) -> bytes:
    data = {
        "version": ENVELOPE_VERSION,
        "queue_id": entry.queue_id,
        "sender": entry.sender,
        "recipients": list(entry.recipients),
        "created_at": entry.created_at,
        "size": entry.size,
        "origin_account": entry.origin_account,
        "meta": entry.meta,
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _entry_from_json(data: dict[str, Any]) -> SpoolEntry:
    if data.get("version") != ENVELOPE_VERSION:
        raise ValueError(f"unknown envelope version {data.get('version')!r}")
    return SpoolEntry(
        queue_id=str(data["queue_id"]),
        sender=str(data["sender"]),
        recipients=tuple(str(rcpt) for rcpt in data["recipients"]),
        created_at=float(data["created_at"]),
        size=int(data["size"]),
        origin_account=None if data["origin_account"] is None else str(data["origin_account"]),
        meta={str(key): str(value) for key, value in data["meta"].items()},
    )
