"""Selective restore into a running server: ``hardmail backup restore ARCHIVE --only settings``,
``--only domain example.org`` or ``--only mailbox alice@example.org`` (``--as-folder NAME`` for
the two with mail). Everything is merged: what is missing live is added, what exists live is left
as it is and reported; nothing live is overwritten or removed.

It works through the live store's interfaces and the mailbox store, never by writing the live
database file, so that the running server sees each change as it would see an admin's (domains and
accounts through its look-ups, messages through the mailbox index's change feed). What each kind
restores: :mod:`selective_settings` (domains, accounts with their credentials, aliases, IP ranges,
settings rows, routes, DKIM keys, the configuration file as ``<name>.restored``) and
:mod:`selective_mailbox` (folders and messages, with their flags, keywords, INTERNALDATE and, where
they cannot collide, UIDs).

The archive is read twice at most: once for its manifest, database and small files, once more
(with the older archives of its chain that hold them) for the message files that are missing
live, which are extracted to a private scratch directory in ``<data_dir>/run/`` (never backed up;
removed at the end) and hash-checked against the manifest before anything is written live.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hardmail.auth.server_key import ServerKeyError, load_or_create_server_key
from hardmail.config.schema import Config
from hardmail.core.address import AddressError, normalize_domain, parse_address_arg
from hardmail.core.clock import SystemClock
from hardmail.delivery.durable import make_private_dir
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.mailbox import MailboxStore
from hardmail.mailbox import names as folder_names
from hardmail.mailbox.types import FolderError
from hardmail.ops.backup.manifest import FileEntry, Manifest
from hardmail.ops.backup.selective_archive import (
    EntryFilter,
    ProgressCallback,
    SelectiveError,
    database_filter,
    extract_selected,
    open_archived_store,
)
from hardmail.ops.backup.selective_mailbox import MailboxPlan, plan_mailbox, restore_mailbox
from hardmail.ops.backup.selective_report import SelectiveReport, Tally
from hardmail.ops.backup.selective_settings import (
    RESTORING_HASH,
    Places,
    Scope,
    ServerKeys,
    read_key,
    restore_objects,
)
from hardmail.ops.log import log_event
from hardmail.store import open_store
from hardmail.store.ports import Store, StoreError

__all__ = ["OnlyKind", "ProgressCallback", "SelectiveError", "SelectiveReport", "check_request", "restore_selective"]

OnlyKind = Literal["settings", "domain", "mailbox"]
SERVER_KEY_PATH = "files/server.key"


@dataclass(frozen=True, slots=True)
class _Request:
    kind: OnlyKind
    value: str | None  # the domain or the address, in lookup form
    as_folder: str | None

    @property
    def domain(self) -> str | None:
        return None if self.value is None else self.value.rpartition("@")[2]


async def restore_selective(config: Config, archive: Path, only_kind: OnlyKind, only_value: str | None,
                            identities: Sequence[Path] = (), as_folder: str | None = None,
                            progress: ProgressCallback | None = None, *,
                            config_file: Path | None = None) -> SelectiveReport:
    """Merge part of ``archive`` (following its chain) into the server of ``config``.
    ``config_file``: the live configuration file (``--only settings`` writes the archived one next
    to it as ``<name>.restored``; without it, into the data directory). Raises SelectiveError."""
    request = check_request(only_kind, only_value, as_folder)
    live = await _open_live(config)
    try:
        mailboxes = build_mailbox_store(config, live, SystemClock())
        if request.kind == "mailbox":
            await _require_live_account(live, request)
        run_dir = config.data_dir / "run"
        await asyncio.to_thread(make_private_dir, run_dir)
        with tempfile.TemporaryDirectory(prefix="selective-restore-", dir=run_dir) as scratch:
            tally = Tally()
            name = await _restore(config, live, mailboxes, request, archive, Path(scratch), identities, progress,
                                  config_file, tally)
    except StoreError as exc:
        raise SelectiveError(f"the live database failed during the restore: {exc}",
                             "check storage.url and that the database is reachable, then run the restore "
                             "again (it adds only what is still missing)") from None
    finally:
        await live.close()
    report = SelectiveReport.of(request.kind, request.value, name, tally)
    log_event("backup.restored", kind="selective", only=request.kind, value=request.value, archive=name,
              messages=report.messages_added, accounts=report.added.get("account", 0),
              warnings=len(report.warnings))
    return report


async def _restore(config: Config, live: Store, mailboxes: MailboxStore, request: _Request, archive: Path,
                   into: Path, identities: Sequence[Path], progress: ProgressCallback | None,
                   config_file: Path | None, tally: Tally) -> str:
    first = _first_pass(request)
    manifest = await asyncio.to_thread(extract_selected, archive, into, identities, first, progress)
    archived = await open_archived_store(into, manifest)
    try:
        accounts = await _accounts_of(archived, request)
        if request.kind != "mailbox":
            keys = ServerKeys(await asyncio.to_thread(read_key, into / SERVER_KEY_PATH), _live_key(config))
            places = Places(config.data_dir, into, config_file, manifest.name)
            scope = Scope(request.domain if request.kind == "domain" else None)
            await restore_objects(live, archived, scope, keys, places, tally, SystemClock())
            accounts = [a for a in accounts if await _usable_live(live, a)]
        if request.kind != "settings":
            plans = [await plan_mailbox(mailboxes, manifest, account, request.as_folder) for account in accounts]
            await _extract_mail(archive, into, identities, progress, manifest, plans)
            for plan in plans:
                await restore_mailbox(mailboxes, archived, plan, into, request.as_folder, tally, progress)
    finally:
        await archived.close()
    return manifest.name


def _first_pass(request: _Request) -> EntryFilter:
    """The entries of the first pass: the database, the server key, and for settings the DKIM
    keys and the configuration file (of the domain only, for a domain)."""
    dkim = "files/dkim/" if request.kind == "settings" else f"files/dkim/{request.domain}/"

    def select(entry: FileEntry) -> bool:
        path = entry.path
        return (database_filter(entry) or path == SERVER_KEY_PATH
                or (request.kind != "mailbox" and path.startswith(dkim))
                or (request.kind == "settings" and path.startswith("config/")))
    return select


async def _extract_mail(archive: Path, into: Path, identities: Sequence[Path], progress: ProgressCallback | None,
                        manifest: Manifest, plans: list[MailboxPlan]) -> None:
    wanted = set().union(*(plan.wanted for plan in plans)) if plans else set()
    if not wanted:
        return
    await asyncio.to_thread(extract_selected, archive, into, identities, lambda e: e.path in wanted, progress,
                            manifest=manifest)


async def _accounts_of(archived: Store, request: _Request) -> list[str]:
    """The archived accounts whose mail the request restores (checks the archive holds its object)."""
    if request.kind == "mailbox":
        assert request.value is not None
        if await archived.get_account(request.value) is None:
            raise SelectiveError(f"the archive has no account {request.value}",
                                 "check the address, or use an archive made while the account existed")
        return [request.value]
    if request.kind == "domain":
        assert request.value is not None
        if await archived.get_domain(request.value) is None:
            raise SelectiveError(f"the archive has no domain {request.value}",
                                 "check the name, or use an archive made while the domain was hosted")
        return [account.address for account in await archived.list_accounts(request.value)]
    return []


async def _usable_live(live: Store, address: str) -> bool:
    found = await live.get_account(address)
    return found is not None and found.password_hash != RESTORING_HASH


async def _require_live_account(live: Store, request: _Request) -> None:
    assert request.value is not None
    if await live.get_account(request.value) is not None:
        return
    domain = request.domain
    if await live.get_domain(domain or "") is None:
        raise SelectiveError(f"no account {request.value} here, and its domain {domain} is not hosted",
                             f"restore the domain first (`--only domain {domain}`: its accounts with their "
                             f"mail), or `--only settings`")
    raise SelectiveError(f"no account {request.value} here",
                         f"restore its domain first (`--only domain {domain}` adds the missing accounts with their "
                         f"mail), or create it with `hardmail account add {request.value}`")


def check_request(kind: str, value: str | None, as_folder: str | None = None) -> _Request:
    """The request in lookup form (a CLI may call it first, to refuse a wrong one before any work);
    raises SelectiveError."""
    if kind == "settings":
        if value:
            raise SelectiveError("--only settings takes no value", "give `--only settings` alone")
        if as_folder:
            raise SelectiveError("--as-folder applies to mail", "use it with --only mailbox or --only domain")
        return _Request("settings", None, None)
    if kind not in ("domain", "mailbox") or not value:
        raise SelectiveError(f"--only {kind} {value or ''}".strip() + " is not something to restore",
                             "give --only settings, --only domain DOMAIN or --only mailbox ADDRESS")
    try:
        key = normalize_domain(value) if kind == "domain" else parse_address_arg(value).key
    except AddressError as exc:
        raise SelectiveError(f"invalid {'domain' if kind == 'domain' else 'address'} {value!r}: {exc}",
                             "give a domain such as example.org, or an address such as alice@example.org") from None
    return _Request(kind, key, _as_folder(as_folder))  # type: ignore[arg-type]


def _as_folder(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        canonical = folder_names.normalize(name)
    except FolderError as exc:
        raise SelectiveError(f"--as-folder {name!r}: {exc}", "give a folder name such as Restored") from None
    if canonical == folder_names.INBOX:
        raise SelectiveError("--as-folder cannot be INBOX", "give a folder name such as Restored")
    return canonical


async def _open_live(config: Config) -> Store:
    try:
        store = await open_store(config.database_url)
        await store.migrate()
    except StoreError as exc:
        raise SelectiveError(f"cannot open the live database: {exc}",
                             "check storage.url and that the database is reachable") from None
    return store


def _live_key(config: Config) -> bytes:
    try:
        return load_or_create_server_key(config.data_dir)
    except ServerKeyError as exc:
        raise SelectiveError(str(exc), "fix the key file named above, then run the restore again") from None
