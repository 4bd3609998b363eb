"""The services a running server shares between its sessions (built by app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hardmail.auth.pool import HashPool
from hardmail.config.schema import Config
from hardmail.core.clock import Clock, SystemClock
from hardmail.delivery.assembly import DeliveryServices
from hardmail.delivery.incoming import IncomingStore
from hardmail.delivery.pipeline import MessageAcceptor
from hardmail.server.hooks import SessionHook
from hardmail.server.sessions import SessionRegistry
from hardmail.server.tls import TlsManager
from hardmail.store.ports import Store

if TYPE_CHECKING:
    from hardmail.mailbox import ChangeNotifier, MailboxStore


@dataclass
class ServerContext:
    config: Config
    store: Store
    hash_pool: HashPool
    tls: TlsManager
    acceptor: MessageAcceptor
    clock: Clock = field(default_factory=SystemClock)
    delivery: DeliveryServices | None = None
    hooks: list[SessionHook] = field(default_factory=list)  # checks run by every session, in order
    sessions: SessionRegistry = field(default_factory=SessionRegistry)  # authenticated, by account
    incoming: IncomingStore | None = None  # messages being received (made from the config on first use)
    mailboxes: MailboxStore | None = None  # folders and their index (IMAP, POP3, local delivery)
    notifier: ChangeNotifier | None = None  # mailbox changes of this and the other server processes

    def incoming_store(self) -> IncomingStore:
        if self.incoming is None:
            smtp = self.config.smtp
            self.incoming = IncomingStore(self.config.incoming_dir, smtp.max_bytes_in_flight, smtp.max_header_size)
        return self.incoming

    def mailbox_store(self) -> MailboxStore:
        """The process's mailbox store (made by ``app.build_context`` with the change notifier)."""
        if self.mailboxes is None:
            raise RuntimeError("this server context has no mailbox store (app.build_context makes it)")
        return self.mailboxes

    @property
    def login_store(self) -> Store:
        """The store without the look-up cache: a disabled account or a changed password must
        count at the very next login, whatever the cache holds."""
        inner = getattr(self.store, "inner", None)
        return inner if inner is not None else self.store
