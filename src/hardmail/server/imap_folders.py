"""Where IMAP handlers find the mailbox store and the change notifier of the server process, and
how folder names travel on the wire (RFC 9051 5.1: modified UTF-7 unless UTF8=ACCEPT or
IMAP4rev2 is enabled; RFC 6855 3).

The server context carries the process's MailboxStore and ChangeNotifier when the composition
root made them; a context without them (an older build, some tests) gets one made here on first
use, from the same configuration and index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hardmail.mailbox import ChangeNotifier, FolderError, MailboxStore, Subscription
from hardmail.proto.imap.encode import mailbox
from hardmail.server.context import ServerContext

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

DELIMITER = "/"
_MADE: dict[int, tuple[MailboxStore, ChangeNotifier | None]] = {}
_STARTED: set[int] = set()


def mailboxes(ctx: ServerContext) -> MailboxStore:
    if ctx.mailboxes is not None:
        return ctx.mailboxes
    return _made(ctx)[0]


async def folder_exists(store: MailboxStore, account: str, name: str) -> bool:
    """Whether ``name`` is a folder of ``account`` (INBOX always is): one index read, where
    ``store.folder`` also reads the subscriptions and the folder list for the folder's attributes."""
    try:
        await store.row(account, name)
    except FolderError:
        return False
    return True


async def watch(ctx: ServerContext, account: str, folder: str) -> Subscription | None:
    """A change subscription for the folder (None when the process has no notifier)."""
    found = ctx.notifier
    if found is None and ctx.mailboxes is None:
        found = _made(ctx)[1]
        if found is not None and id(ctx) not in _STARTED:  # ours: started on first use
            _STARTED.add(id(ctx))
            await found.start()
    return found.subscribe(account, folder) if found is not None else None


def _made(ctx: ServerContext) -> tuple[MailboxStore, ChangeNotifier | None]:
    made = _MADE.get(id(ctx))
    if made is None:
        index = ctx.store.mailbox
        change_notifier = ChangeNotifier(index, ctx.clock)
        store = MailboxStore(ctx.config.maildir_root, index, ctx.config.server.hostname, ctx.clock,
                             notifier=change_notifier)
        made = _MADE[id(ctx)] = (store, change_notifier)
    return made


def wire_name(session: ImapSession, name: str) -> bytes:
    """A folder name as a string value for LIST, STATUS, ... responses."""
    return mailbox(name, utf8=session.utf8)
