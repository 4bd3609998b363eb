"""IDLE (RFC 2177; RFC 9051 6.3.13): the client waits, the server pushes EXISTS, EXPUNGE (or
VANISHED) and FETCH as the selected folder changes, until the client sends DONE.

The session waits on two things at once: the client's next bytes and the folder's change
subscription (:class:`hardmail.mailbox.ChangeNotifier`: at once for changes made in this process,
within its poll interval for other processes and deliveries). Without a notifier the folder is
looked at every POLL_SECONDS. The wait for the client is the session's ordinary read, so the
``[imap] idle_timeout`` (30 minutes by default, RFC 2177 3) ends an IDLE nobody renews, and an
account change or a server stop ends it like any other wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from hardmail.proto.imap import commands as c
from hardmail.proto.imap.encode import continuation
from hardmail.server.imap_common import Done, bad, ok

if TYPE_CHECKING:
    from hardmail.server.imap_select import SelectedFolder
    from hardmail.server.imap_session import ImapSession

POLL_SECONDS = 1.0  # without a change notifier


async def idle(session: ImapSession, command: c.Idle) -> Done:
    session.send(continuation("idling"))
    session.conn.expect_idle_done()
    folder = session.selected
    if folder is not None:
        await folder.send_updates(session)
    reader: asyncio.Future[bytes] | None = None
    try:
        while True:
            event: Any = session.conn.next_event()
            if isinstance(event, c.IdleDone):
                return ok("IDLE terminated")
            if not isinstance(event, c.NeedData):
                return bad(getattr(event, "text", "Expected DONE"))
            await session.drain()
            if reader is None:
                reader = asyncio.ensure_future(session.read())
            if not await _wait(session, session.selected, reader):
                continue
            data = reader.result()
            reader = None
            if not data:
                session.conn.logged_out()  # gone, or timed out (the BYE was written)
                return ok("IDLE terminated")
            session.conn.receive_data(data)
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reader


async def _wait(session: ImapSession, folder: SelectedFolder | None, reader: asyncio.Future[bytes]) -> bool:
    """Until the client sent something (True) or the folder changed and its updates went out."""
    if folder is None:
        await asyncio.wait({reader})
        return True
    subscription = folder.subscription
    if subscription is None:
        done, _ = await asyncio.wait({reader}, timeout=POLL_SECONDS)
    else:
        changed: asyncio.Future[Any] = asyncio.ensure_future(subscription.changed.wait())
        try:
            waits: set[asyncio.Future[Any]] = {reader, changed}
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not changed.done():
                changed.cancel()
    if reader in done:
        return True
    await folder.refresh(session)  # RFC 2177 3: updates as they happen
    session.flush()
    return False


HANDLERS: dict[type, Any] = {c.Idle: idle}
