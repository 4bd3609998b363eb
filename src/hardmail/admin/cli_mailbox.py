"""``hardmail mailbox list|quota|reindex|create``: the command-line face of
:mod:`hardmail.admin.mailbox_service`.

Each command loads the configuration, opens the store, works on the account's mailbox through
:class:`MailboxService` (the Maildir files under ``<data_dir>/mail`` and their index in the
database) and closes the store. A running server sees the changes within a second (the index's
change feed). Exit codes: 0 success, 1 failure (the message says what was wrong and what to do).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    changes_stored,
    err_console,
    fail,
    load_cli_config,
    print_json,
    print_table,
    read_only,
    run_async,
    with_store,
)
from hardmail.admin.mailbox_service import MailboxService, human_size, parse_size
from hardmail.admin.service import AdminError
from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.local_index import build_mailbox_store
from hardmail.mailbox import FolderInfo, Quota, ReindexReport
from hardmail.store.ports import StoreError

T = TypeVar("T")

mailbox_app = typer.Typer(help="Mailboxes: folders, quotas and the index of the Maildir files.",
                          no_args_is_help=True)

AddressArg = Annotated[str, typer.Argument(help="The account's address.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(app: typer.Typer) -> None:
    app.add_typer(mailbox_app, name="mailbox")


def _run(config: Path | None, data_dir: Path | None, work: Callable[[MailboxService], Awaitable[T]]) -> T:
    cfg = load_cli_config(config, data_dir)
    try:
        return run_async(lambda: with_store(cfg, lambda store: work(_service(cfg, store))))
    except AdminError as exc:
        fail(exc.message, exc.hint)
    except StoreError as exc:
        fail(str(exc), "check storage.url in the configuration and that the database is reachable")
    except OSError as exc:
        fail(f"cannot use the mailbox: {exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else ""),
             "check that server.data_dir and its mail directory are readable and writable by this user")


def _service(cfg: Config, store: Any) -> MailboxService:
    return MailboxService(store, build_mailbox_store(cfg, store, SystemClock()))


def _size_cell(value: int | None) -> str:
    return "unlimited" if value is None else human_size(value)


def _folder_row(info: FolderInfo) -> dict[str, Any]:
    return {"name": info.name, "special_use": info.special_use, "subscribed": info.subscribed,
            "messages": info.messages, "unseen": info.unseen, "size": info.size, "deleted": info.deleted,
            "uidvalidity": info.uidvalidity, "uidnext": info.uidnext}


def _quota_row(quota: Quota) -> dict[str, Any]:
    return {"storage_used": quota.storage_used, "storage_limit": quota.storage_limit,
            "messages_used": quota.messages_used, "messages_limit": quota.messages_limit}


@mailbox_app.command("list")
@read_only
def mailbox_list(address: AddressArg, as_json: JsonOption = False, config: ConfigOption = None,
                 data_dir: DataDirOption = None) -> None:
    """List an account's folders with their message counts and sizes."""
    folders = _run(config, data_dir, lambda service: service.list_folders(address))
    rows = [_folder_row(info) for info in folders]
    if as_json:
        print_json(rows)
        return
    cells = [(r["name"], r["special_use"] or "", str(r["messages"]), str(r["unseen"]), human_size(r["size"]))
             for r in rows]
    print_table("Folders", ("Folder", "Special use", "Messages", "Unseen", "Size"), cells)
    if not rows:
        typer.echo("its folders are made at its first delivery, or by `hardmail mailbox create`")


StorageOption = Annotated[str | None, typer.Option(
    "--storage", help="Set the storage limit: bytes, or with K, M, G, T (binary: 1G = 1024^3 bytes).",
    show_default=False)]
MessagesOption = Annotated[int | None, typer.Option("--messages", min=1, help="Set the message-count limit.",
                                                    show_default=False)]
UnlimitedOption = Annotated[bool, typer.Option("--unlimited", help="Remove both limits.")]


@mailbox_app.command("quota")
@changes_stored
def mailbox_quota(address: AddressArg, storage: StorageOption = None, messages: MessagesOption = None,
                  unlimited: UnlimitedOption = False, as_json: JsonOption = False,
                  config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Show an account's quota and usage; with --storage, --messages or --unlimited, set it first."""
    if unlimited and (storage is not None or messages is not None):
        fail("--unlimited removes both limits: it cannot be given with --storage or --messages",
             "give either --unlimited, or --storage and/or --messages")
    storage_bytes = _storage_arg(storage)
    changing = unlimited or storage is not None or messages is not None

    async def work(service: MailboxService) -> Quota:
        if not changing:
            return await service.quota(address)
        current = await service.quota(address)
        if unlimited:
            return await service.set_quota(address, None, None)
        return await service.set_quota(address, current.storage_limit if storage_bytes is None else storage_bytes,
                                       current.messages_limit if messages is None else messages)

    quota = _run(config, data_dir, work)
    if as_json:
        print_json(_quota_row(quota))
        return
    typer.echo(f"storage:  {human_size(quota.storage_used)} of {_size_cell(quota.storage_limit)}")
    typer.echo(f"messages: {quota.messages_used} of "
               f"{'unlimited' if quota.messages_limit is None else quota.messages_limit}")


def _storage_arg(storage: str | None) -> int | None:
    if storage is None:
        return None
    try:
        size = parse_size(storage)
    except ValueError as exc:
        fail(str(exc), "for example --storage 1G, --storage 500M or --storage 1048576")
    if size <= 0:
        fail("--storage must be more than 0 bytes", "to remove the limit, give --unlimited")
    return size


FolderOption = Annotated[str | None, typer.Option("--folder", help="Only this folder (e.g. INBOX, Sent).",
                                                  show_default=False)]


@mailbox_app.command("reindex")
@changes_stored
def mailbox_reindex(address: AddressArg, folder: FolderOption = None, as_json: JsonOption = False,
                    config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Re-read the Maildir of an account changed behind the server's back (files added, removed or
    renamed); existing messages keep their UIDs."""
    async def work(service: MailboxService) -> ReindexReport:
        if not as_json:
            count = 1 if folder else await service.folder_count(address)
            err_console.print(f"re-indexing {folder or f'{count} folders'} (a big folder takes a while: "
                              "every file is looked at)...", highlight=False, markup=False)
        return await service.reindex(address, folder)

    total = _run(config, data_dir, work)
    if as_json:
        print_json({"folders": total.folders, "added": total.added, "removed": total.removed,
                    "renamed": total.renamed})
        return
    typer.echo(f"re-indexed {total.folders} folder{'' if total.folders == 1 else 's'}: {_counts(total)}")


def _counts(report: ReindexReport) -> str:
    return f"{report.added} added, {report.removed} removed, {report.renamed} renamed"


SpecialUseOption = Annotated[str | None, typer.Option(
    "--special-use", help="Mark it as \\Sent, \\Drafts, \\Trash, \\Junk or \\Archive "
    "(RFC 6154; the backslash may be left out).", show_default=False)]


@mailbox_app.command("create")
@changes_stored
def mailbox_create(address: AddressArg,
                   name: Annotated[str, typer.Argument(help="Folder name, / between levels (Archive/2024).")],
                   special_use: SpecialUseOption = None, config: ConfigOption = None,
                   data_dir: DataDirOption = None) -> None:
    """Create a folder in an account's mailbox."""
    info = _run(config, data_dir, lambda service: service.create_folder(address, name, special_use))
    use = f" ({info.special_use})" if info.special_use else ""
    typer.echo(f"folder {info.name}{use} created")
