"""IMAP commands on folders as a whole: LIST (RFC 9051 6.3.9, LIST-EXTENDED RFC 5258, LIST-STATUS
RFC 5819, SPECIAL-USE RFC 6154, CHILDREN RFC 3348), LSUB (RFC 3501 6.3.9), CREATE (with USE,
RFC 6154 3), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS (STATUS=SIZE RFC 8438), NAMESPACE
(RFC 2342) and the QUOTA commands (RFC 9208).

One namespace, personal, no prefix, ``/`` as the hierarchy delimiter; names are UTF-8 inside.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from hardmail.mailbox import FolderError, FolderInfo
from hardmail.proto.imap import commands as c
from hardmail.proto.imap.encode import list_response
from hardmail.server.imap_common import Done, bad, folder_error_done, no, ok
from hardmail.server.imap_folders import DELIMITER, wire_name

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ",
                "APPENDLIMIT")
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")


def pattern_matcher(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 6.3.9: ``*`` matches anything, ``%`` anything but the delimiter; INBOX in any case."""
    full = reference + pattern if not pattern.startswith(DELIMITER) or not reference else reference + pattern[1:]
    parts = []
    for char in full:
        parts.append(".*" if char == "*" else "[^/]*" if char == "%" else re.escape(char))
    text = "".join(parts)
    if full[:5].upper() == "INBOX":
        text = "(?i:INBOX)" + "".join(parts[5:])
    return re.compile(text + r"\Z", re.DOTALL)


def _attributes(name: str, info: FolderInfo | None, command: c.List, subscribed: set[str]) -> list[str]:
    wants_subscribed = "SUBSCRIBED" in command.returns or "SUBSCRIBED" in command.selection
    if info is None:  # RFC 5258 3.4: a subscription to a folder that is gone (still subscribed)
        return ["\\NonExistent", *(["\\Subscribed"] if wants_subscribed and name in subscribed else [])]
    attrs = []
    if not command.extended or "CHILDREN" in command.returns or command.selection:
        attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
    if info.special_use and (not command.extended or "SPECIAL-USE" in command.returns
                             or "SPECIAL-USE" in command.selection):
        attrs.append(info.special_use)
    if info.name in subscribed and wants_subscribed:
        attrs.append("\\Subscribed")
    return attrs


def _list_line(session: ImapSession, verb: str, attrs: list[str], name: str) -> bytes:
    return b"* " + verb.encode() + b" (" + " ".join(attrs).encode() + b') "/" ' + wire_name(session, name) + b"\r\n"


async def list_folders(session: ImapSession, command: c.List) -> Done:
    assert session.account is not None
    if command.patterns == ("",):  # RFC 9051 6.3.9: the delimiter and the root
        session.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return ok("LIST completed")
    store = session.ctx.mailbox_store()
    folders = {info.name: info for info in await store.list_folders(session.account)}
    subscribed = set(await store.subscriptions(session.account))
    matchers = [pattern_matcher(command.reference, p) for p in command.patterns]
    names: list[str] = sorted(folders, key=lambda n: (n != "INBOX", n))
    if "SUBSCRIBED" in command.selection:
        names = [n for n in names if n in subscribed] + sorted(subscribed - set(folders))
    if "SPECIAL-USE" in command.selection:
        names = [n for n in names if n in folders and folders[n].special_use]
    for name in names:
        if not any(m.match(name) for m in matchers):
            continue
        info = folders.get(name)
        session.send(_list_line(session, "LIST", _attributes(name, info, command, subscribed), name))
        if info is not None and "STATUS" in command.returns and command.status_items:
            recent = await _unclaimed_recent(session, info.name, command.status_items)
            session.send(_status_line(session, info, command.status_items, recent))  # RFC 5819 2
        await session.pace()
    if {"SUBSCRIBED", "RECURSIVEMATCH"} <= command.selection:
        _childinfo(session, command, matchers, subscribed, folders)
    return ok("LIST completed")


def _childinfo(session: ImapSession, command: c.List, matchers: list[re.Pattern[str]], subscribed: set[str],
               folders: dict[str, FolderInfo]) -> None:
    """RFC 5258 3.5: a matching folder that is not subscribed itself but has a subscribed folder
    below it is listed with CHILDINFO ("SUBSCRIBED")."""
    parents = {name.rsplit(DELIMITER, depth)[0] for name in subscribed for depth in range(1, name.count(DELIMITER) + 1)}
    for name in sorted(parents - subscribed):
        if any(m.match(name) for m in matchers):
            attrs = [] if name in folders else ["\\NonExistent"]
            session.send(list_response(attrs, DELIMITER, name, utf8=session.utf8,
                                       extended=[("CHILDINFO", ["SUBSCRIBED"])]))


async def lsub(session: ImapSession, command: c.Lsub) -> Done:
    assert session.account is not None
    store = session.ctx.mailbox_store()
    matcher = pattern_matcher(command.reference, command.pattern)
    for name in sorted(await store.subscriptions(session.account)):
        if matcher.match(name):
            # RFC 3501 6.3.9: \Noselect in LSUB is for an unsubscribed parent; a subscribed
            # name is listed as it is, whether its mailbox exists or not (as Dovecot)
            session.send(_list_line(session, "LSUB", [], name))
    return ok("LSUB completed")


async def _unclaimed_recent(session: ImapSession, name: str, items: tuple[str, ...]) -> int:
    """STATUS RECENT: the messages no session has claimed as \\Recent yet (RFC 3501 6.3.10)."""
    if "RECENT" not in items:
        return 0
    assert session.account is not None
    return len((await session.ctx.mailbox_store().snapshot(session.account, name)).recent_uids)


def _status_line(session: ImapSession, info: FolderInfo, items: tuple[str, ...], recent: int) -> bytes:
    values = {
        "MESSAGES": info.messages, "UIDNEXT": info.uidnext, "UIDVALIDITY": info.uidvalidity,
        "UNSEEN": info.unseen, "DELETED": info.deleted, "SIZE": info.size, "RECENT": recent,
        "HIGHESTMODSEQ": info.highestmodseq, "APPENDLIMIT": session.append_limit,
    }
    pairs = " ".join(f"{item} {values[item]}" for item in items if item in values)
    return b"* STATUS " + wire_name(session, info.name) + b" (" + pairs.encode() + b")\r\n"


async def status(session: ImapSession, command: c.Status) -> Done:
    assert session.account is not None
    unknown = [item for item in command.items if item not in STATUS_ITEMS]
    if unknown:
        return bad(f"Unknown STATUS item {unknown[0]}")
    store = session.ctx.mailbox_store()
    info = await store.folder(session.account, command.mailbox)
    if info is None:
        return no("No such mailbox", "NONEXISTENT")
    recent = await _unclaimed_recent(session, info.name, command.items)
    if "HIGHESTMODSEQ" in command.items:
        session.condstore = True  # RFC 7162 3.1: a CONDSTORE-enabling command
    session.send(_status_line(session, info, command.items, recent))
    return ok("STATUS completed")


async def create(session: ImapSession, command: c.Create) -> Done:
    assert session.account is not None
    name = command.mailbox.rstrip(DELIMITER)  # RFC 9051 6.3.4: a trailing delimiter is only intent
    if not name:
        return bad("Empty mailbox name")
    if name.upper() == "INBOX":
        return no("INBOX always exists", "ALREADYEXISTS")
    if len(command.special_use) > 1 or any(u not in SPECIAL_USES for u in command.special_use):
        return no("Only one of " + " ".join(SPECIAL_USES) + " can be given", "USEATTR")  # RFC 6154 3
    try:
        await session.ctx.mailbox_store().create_folder(session.account, name,
                                                   command.special_use[0] if command.special_use else None)
    except FolderError as exc:
        return folder_error_done(exc)
    return ok("CREATE completed")


async def delete(session: ImapSession, command: c.Delete) -> Done:
    assert session.account is not None
    if command.mailbox == "INBOX":
        return no("INBOX cannot be deleted", "CANNOT")
    try:
        await session.ctx.mailbox_store().delete_folder(session.account, command.mailbox)
    except FolderError as exc:
        return folder_error_done(exc)
    return ok("DELETE completed")


async def rename(session: ImapSession, command: c.Rename) -> Done:
    assert session.account is not None
    if command.new.upper() == "INBOX":
        return no("INBOX already exists", "ALREADYEXISTS")
    try:
        await session.ctx.mailbox_store().rename_folder(session.account, command.old, command.new.rstrip(DELIMITER))
    except FolderError as exc:
        return folder_error_done(exc)
    return ok("RENAME completed")


async def subscribe(session: ImapSession, command: c.Subscribe | c.Unsubscribe) -> Done:
    assert session.account is not None
    wanted = isinstance(command, c.Subscribe)
    store = session.ctx.mailbox_store()
    if wanted and await store.folder(session.account, command.mailbox) is None:
        return no("No such mailbox", "NONEXISTENT")  # RFC 9051 6.3.9: the server MAY check it exists
    try:
        await store.set_subscribed(session.account, command.mailbox, wanted)
    except FolderError as exc:
        return folder_error_done(exc)
    return ok("SUBSCRIBE completed" if wanted else "UNSUBSCRIBE completed")


async def namespace(session: ImapSession, command: c.Namespace) -> Done:
    session.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')  # RFC 2342 5: personal only
    return ok("NAMESPACE completed")


# ----- QUOTA (RFC 9208) -----------------------------------------------------------------------


async def _quota_line(session: ImapSession) -> bytes | None:
    assert session.account is not None
    quota = await session.ctx.mailbox_store().quota(session.account)
    resources: list[str] = []
    if quota.storage_limit is not None:  # RFC 9208 5.1: STORAGE in units of 1024 octets
        resources.append(f"STORAGE {(quota.storage_used + 1023) // 1024} {quota.storage_limit // 1024}")
    if quota.messages_limit is not None:
        resources.append(f"MESSAGE {quota.messages_used} {quota.messages_limit}")
    if not resources:
        return None
    return ('* QUOTA "" (' + " ".join(resources) + ")\r\n").encode()


async def getquotaroot(session: ImapSession, command: c.GetQuotaRoot) -> Done:
    assert session.account is not None
    if await session.ctx.mailbox_store().folder(session.account, command.mailbox) is None:
        return no("No such mailbox", "NONEXISTENT")
    line = await _quota_line(session)
    session.send(b"* QUOTAROOT " + wire_name(session, command.mailbox) + (b' ""' if line else b"") + b"\r\n")
    if line is not None:
        session.send(line)
    return ok("GETQUOTAROOT completed")


async def getquota(session: ImapSession, command: c.GetQuota) -> Done:
    if command.root != "":
        return no("No such quota root", "NONEXISTENT")
    line = await _quota_line(session)
    if line is None:
        return no("No quota is set for this account", "NONEXISTENT")
    session.send(line)
    return ok("GETQUOTA completed")


async def setquota(session: ImapSession, command: c.SetQuota) -> Done:
    return no("Quotas are set by the administrator (hardmail mailbox quota)", "NOPERM")


HANDLERS: dict[type, Any] = {
    c.List: list_folders,
    c.Lsub: lsub,
    c.Status: status,
    c.Create: create,
    c.Delete: delete,
    c.Rename: rename,
    c.Subscribe: subscribe,
    c.Unsubscribe: subscribe,
    c.Namespace: namespace,
    c.GetQuotaRoot: getquotaroot,
    c.GetQuota: getquota,
    c.SetQuota: setquota,
}
