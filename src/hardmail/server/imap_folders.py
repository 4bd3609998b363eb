"""Where IMAP handlers find the mailbox store and the change notifier of the server process, and
how folder names travel on the wire (RFC 9051 5.1: modified UTF-7 unless UTF8=ACCEPT or
IMAP4rev2 is enabled; RFC 6855 3).

The MailboxStore and ChangeNotifier are the process's, on the server context (``app.build_context``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hardmail.mailbox import FolderError, MailboxStore, Subscription
from hardmail.proto.imap.encode import mailbox
from hardmail.server.context import ServerContext

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

DELIMITER = "/"


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
    return ctx.notifier.subscribe(account, folder) if ctx.notifier is not None else None


def wire_name(session: ImapSession, name: str) -> bytes:
    """A folder name as a string value for LIST, STATUS, ... responses."""
    return mailbox(name, utf8=session.utf8)
