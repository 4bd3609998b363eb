"""Local delivery's side of the mailbox index: files just put into ``new/`` get their UIDs, mailboxes
are set up on first use, and quota usage is read for the RCPT and DATA checks.

Order of a local delivery (DESIGN.md data-safety invariant): the Maildir files are written and
fsync'd (:mod:`hardmail.delivery.group_commit`), then :meth:`DeliveryIndexer.index` records them in
the index (:meth:`hardmail.mailbox.MailboxStore.deliver_indexed`, one transaction per mailbox),
then the client gets its 250. Indexing never fails a delivery: the file is on disk in ``new/``, and
the next sync of the folder (an IMAP SELECT, POP3 login, ``hardmail mailbox reindex``) or the
start-up reconcile (:meth:`MailboxStore.reconcile_all`) indexes it, so the message is never lost;
the failure is logged (``mailbox.index_failed``) so that the admin knows why the UID came late.

A mailbox is set up (:func:`set_up_mailbox`: INBOX and the special-use folders) when its account is
created, and lazily at its first delivery for accounts made before the mailbox index existed. An
account without limits of its own has the default quota of ``[mailbox]`` (the mailbox store applies
it, so a changed default counts for them at the next start).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hardmail.config.schema import Config
from hardmail.core.clock import Clock
from hardmail.ops.log import log_event
from hardmail.policy.quota import OverQuota, over_quota_reason
from hardmail.store.ports import Store

if TYPE_CHECKING:
    from hardmail.mailbox import ChangeNotifier, MailboxStore, Quota

INBOX = "INBOX"
MAX_KNOWN_READY = 100_000  # accounts this process remembers as set up (then it asks the index again)


def build_mailbox_store(config: Config, store: Store, clock: Clock,
                        notifier: ChangeNotifier | None = None) -> MailboxStore:
    """The mailbox store of ``config`` over ``store``'s index, with the default quota of ``[mailbox]``."""
    from hardmail.mailbox import MailboxStore

    section = config.mailbox
    defaults = (section.default_quota_bytes or None, section.default_quota_messages or None)
    return MailboxStore(config.maildir_root, store.mailbox, config.server.hostname, clock, notifier=notifier,
                        quota_defaults=defaults)


async def set_up_mailbox(mailboxes: MailboxStore, account: str) -> None:
    """Make sure ``account`` has its INBOX and special-use folders, subscribed (idempotent)."""
    await mailboxes.ensure_account(account)


class DeliveryIndexer:
    """One per server process, shared by SMTP acceptance and local delivery notices."""

    def __init__(self, mailboxes: MailboxStore, over_quota: OverQuota = "defer") -> None:
        self.mailboxes = mailboxes
        self.over_quota = over_quota  # [mailbox] over_quota
        self._ready: set[str] = set()

    async def ready(self, account: str) -> None:
        """Set the account's mailbox up unless this process already did (or saw it was)."""
        if account in self._ready:
            return
        await set_up_mailbox(self.mailboxes, account)
        if len(self._ready) >= MAX_KNOWN_READY:
            self._ready.clear()
        self._ready.add(account)

    async def quota(self, account: str) -> Quota:
        """Usage and limits (index only: nothing is set up for a mail that may never come)."""
        return await self.mailboxes.quota(account)

    async def without_room(self, accounts: Sequence[str], size: int) -> tuple[str, ...]:
        """The accounts of ``accounts`` that a message of ``size`` bytes must not go to, at delivery
        (after the end of DATA, for a message accepted for several recipients): in "bounce" mode
        the full ones; in "defer" mode none (SMTP has one reply for all recipients and local
        delivery has no queue to wait in, so a mailbox that had room at RCPT takes this one
        message over its limit, like Dovecot's quota_grace; the next message is refused at RCPT)."""
        full = []
        for account in accounts:
            try:
                reason = over_quota_reason(await self.quota(account), size)
            except Exception as exc:  # delivery goes on: the quota protects the disk, not the message
                log_event("mailbox.quota_unknown", level="warning", account=account, stage="delivery",
                          error=type(exc).__name__, detail=str(exc)[:200])
                continue
            if reason is None:
                continue
            log_event("mailbox.over_quota", account=account, stage="delivery", size=size, reason=reason,
                      action="bounced" if self.over_quota == "bounce" else "delivered over the limit")
            full.append(account)
        return tuple(full) if self.over_quota == "bounce" else ()

    async def index(self, delivered: Sequence[tuple[str, Path]], folder: str | None) -> None:
        """Index each (account, file in new/) just delivered; failures are logged, never raised."""
        name = folder or INBOX
        for account, path in delivered:
            try:
                await self.ready(account)
                await self.mailboxes.deliver_indexed(account, name, [path])
            except Exception as exc:  # the message is safe in new/: the next sync or start indexes it
                self._ready.discard(account)
                log_event("mailbox.index_failed", level="error", account=account, folder=name, file=path.name,
                          error=type(exc).__name__, detail=str(exc)[:200],
                          hint="the message is stored; it gets its UID at the folder's next sync or the next start")


def delivered_files(accounts: Sequence[str], written: Sequence[Path], folder: str | None,
                    maildir_of: Callable[[str], Path]) -> list[tuple[str, Path]]:
    """Pair each account with the file written for it: ``written`` holds one file per distinct
    Maildir, at ``<maildir>/new/<name>`` (INBOX) or ``<maildir>/.<folder>/new/<name>``, and
    ``maildir_of(account)`` is the account's Maildir (INBOX)."""
    up = 3 if folder else 2
    by_maildir: dict[Path, Path] = {}
    for path in written:
        by_maildir[path.parents[up - 1]] = path
    pairs = []
    for account in accounts:
        found = by_maildir.get(maildir_of(account))
        if found is not None:
            pairs.append((account, found))
    return pairs
