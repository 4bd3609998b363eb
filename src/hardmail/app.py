"""The composition root: configuration → stores → services → listeners, and the serve loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hardmail.auth.pool import HashPool
from hardmail.auth.server_key import load_or_create_server_key
from hardmail.auth.verify_cache import enable_verify_cache
from hardmail.config.schema import Config
from hardmail.core.clock import SystemClock
from hardmail.delivery.assembly import DeliveryServices, build_runner, build_services
from hardmail.delivery.group_commit import GroupCommit
from hardmail.delivery.incoming import clear_leftovers
from hardmail.delivery.local_index import DeliveryIndexer, build_mailbox_store
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.maildir_writer import MaildirWriterProcess
from hardmail.delivery.pipeline import MessageAcceptor
from hardmail.delivery.runner import DeliveryRunner
from hardmail.mailbox import ChangeNotifier, MailboxStore
from hardmail.ops.backup.upgrade import UpgradeOptions, upgrade_with_backup
from hardmail.ops.log import configure_logging, log_event
from hardmail.server.access_hook import AccessHook
from hardmail.server.audit_scheduler import AuditScheduler, last_own_run_at
from hardmail.server.backup_scheduler import BackupScheduler
from hardmail.server.context import ServerContext
from hardmail.server.impersonation_hook import ImpersonationHook
from hardmail.server.listener import BoundAddress, Listeners, served_kinds, warn_unserved
from hardmail.server.msgauth_hook import MsgAuthHook, build_msgauth_hook
from hardmail.server.prefork import (
    QUEUE_WAKE_SIGNAL,
    ListeningSocket,
    Supervisor,
    bind_listeners,
    wake_queue_runner,
    worker_count,
    worker_ready,
)
from hardmail.server.quota_hook import QuotaHook
from hardmail.server.security_notices import InboxDelivery, SecurityNotices
from hardmail.server.sessions import AccountChangeMonitor, SessionCheckHook
from hardmail.server.status_keeper import StatusKeeper
from hardmail.server.tls import TlsManager
from hardmail.store import open_store
from hardmail.store.cache import CachedStore, cached_store


def prepare_data_dir(config: Config) -> None:
    for path in (config.data_dir, config.maildir_root, config.spool_dir):
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)


async def build_context(config: Config, first: bool = True, upgrade: UpgradeOptions | None = None) -> ServerContext:
    """Everything a server process needs. ``first``: this is the only or the first process of the
    server, which migrates the database (after a backup, see ``upgrade``) and recovers the spool
    (workers forked later must not)."""
    prepare_data_dir(config)
    load_or_create_server_key(config.data_dir)  # a damaged key stops the start here, before any listener
    tls = TlsManager(config)
    tls.ensure_certificate()
    tls.context()
    if first:
        await upgrade_with_backup(config, upgrade)  # refuses a newer schema; backs up before upgrading
    raw_store = await open_store(config.database_url)
    clock = SystemClock()
    # The server's look-ups go through a short read-through cache (the CLI keeps the raw store).
    store = cached_store(raw_store, clock, config.storage.cache_seconds, config.storage.cache_entries)
    maildir = MaildirStore(config.maildir_root, config.server.hostname)
    notifier = ChangeNotifier(raw_store.mailbox, clock)
    await notifier.start()
    mailboxes = build_mailbox_store(config, raw_store, clock, notifier)
    indexer = DeliveryIndexer(mailboxes, config.mailbox.over_quota, cache_seconds=config.storage.cache_seconds,
                              clock=clock)
    delivery = build_services(config, store, maildir, clock, indexer)
    if first:
        await _recover_spool(delivery)
        await reconcile_mailboxes(mailboxes)
    # Every worker, also one started again after it died: only files of dead processes go.
    await asyncio.to_thread(_clear_incoming, config)
    acceptor = MessageAcceptor(maildir, delivery.queue, config.server.hostname, clock, _committer(config, maildir),
                               indexer=indexer, notices=delivery.notices)
    context = ServerContext(config=config, store=store, hash_pool=HashPool(config.auth.argon2), tls=tls,
                            acceptor=acceptor, clock=clock, delivery=delivery, mailboxes=mailboxes, notifier=notifier)
    context.hooks.insert(0, AccessHook(store, config, clock))  # first: refuses cheaply before other checks
    context.hooks.append(QuotaHook(indexer, config.mailbox))  # before the costly message checks
    enable_verify_cache(context.hash_pool, config.access.verify_cache_seconds)
    msgauth = build_msgauth_hook(config, store.msgauth, clock)
    context.hooks.append(msgauth)  # SPF/DKIM/DMARC, greylisting, spam scoring; DKIM signing
    delivery.notices.sign = _dkim_signature_of(msgauth)  # bounces leave DKIM-signed too
    context.hooks.append(ImpersonationHook(config, store, clock))  # X-Hardmail-Warning on mail from outside
    context.hooks.append(await _session_checks(context))  # last: the re-check nearest to acceptance
    return context


async def _session_checks(context: ServerContext) -> SessionCheckHook:
    """The account-change poll of this process (ends sessions of disabled, frozen, ... accounts)."""
    forget = context.store.forget_account if isinstance(context.store, CachedStore) else None
    monitor = AccountChangeMonitor(context.login_store, context.sessions, context.clock, forget=forget,
                                   interval=context.config.auth.session_check_seconds, prune=True)
    await monitor.start()
    return SessionCheckHook(context.sessions, monitor)


def _committer(config: Config, maildir: MaildirStore) -> GroupCommit | None:
    if config.storage.maildir_writer == "thread":
        return None
    writer = MaildirWriterProcess(config.maildir_root, config.server.hostname)
    return GroupCommit(maildir, asyncio.get_running_loop(), writer=writer)


def _join_queue_wakes(server: RunningServer, worker: int, loop: asyncio.AbstractEventLoop) -> None:
    """Worker processes: worker 0 runs the outbound queue and wakes on QUEUE_WAKE_SIGNAL; every
    other worker sends it (through the supervisor) when it queued mail for remote recipients."""
    if server.runner is not None:
        loop.add_signal_handler(QUEUE_WAKE_SIGNAL, server.runner.wake)
    elif worker > 0 and server.context.delivery is not None:
        server.context.delivery.queue.on_enqueue(wake_queue_runner)


def _clear_incoming(config: Config) -> None:
    for name in clear_leftovers(config.incoming_dir):
        log_event("incoming.recover", file=name, detail="removed a message a stopped process was receiving")


async def reconcile_mailboxes(mailboxes: MailboxStore) -> int:
    """Start-up, first process only: index files put into a Maildir while the server was stopped
    (or left by a crash between a file and its index entry) and drop entries whose file is gone;
    one ``mailbox.repaired`` line per folder that changed, then a summary."""
    try:
        before = await _folder_states(mailboxes)
        repaired = await mailboxes.reconcile_all()
        _log_repaired(before, await _folder_states(mailboxes))
    except Exception as exc:  # the server still starts: each folder is synced when a client opens it
        log_event("mailbox.reconcile", level="error", result="failure", error=type(exc).__name__,
                  detail=str(exc)[:300], hint="folders are synced when a client opens them; "
                  "`hardmail mailbox reindex ADDRESS` repairs one mailbox")
        return 0
    log_event("mailbox.reconcile", result="success", folders=repaired)
    return repaired


FolderState = tuple[str, str, int, int, int]  # account, folder, HIGHESTMODSEQ, messages, UIDNEXT


async def _folder_states(mailboxes: MailboxStore) -> dict[int, FolderState]:
    """Every folder of the index by id (read in batches, as reconcile_all reads them)."""
    states: dict[int, FolderState] = {}
    after = 0
    while batch := await mailboxes.index.all_folders(after):
        for row in batch:
            states[row.id] = (row.account, row.name, row.highestmodseq, row.messages, row.uidnext)
            after = row.id
    return states


def _log_repaired(before: dict[int, FolderState], after: dict[int, FolderState]) -> None:
    for folder_id, (account, name, modseq, messages, uidnext) in before.items():
        now = after.get(folder_id)
        if now is None:
            log_event("mailbox.repaired", account=account, folder=name, detail="its directory is gone: index dropped")
        elif now[2:] != (modseq, messages, uidnext):
            log_event("mailbox.repaired", account=account, folder=name, messages_before=messages,
                      messages=now[3], new_uids=now[4] - uidnext)


async def _recover_spool(delivery: DeliveryServices) -> None:
    for orphan in await asyncio.to_thread(delivery.queue.spool.recover):
        log_event("spool.recover", queue_id=orphan, detail="removed an interrupted spool write")
    await delivery.queue.reconcile()


async def prepare_for_workers(config: Config, upgrade: UpgradeOptions | None = None) -> None:
    """The start-up work done once before workers are forked: certificate, migrations (after a
    backup, see ``upgrade``), spool recovery, mailbox reconcile."""
    prepare_data_dir(config)
    tls = TlsManager(config)
    tls.ensure_certificate()
    tls.context()  # a certificate that cannot be loaded stops the start here, not in every worker
    await upgrade_with_backup(config, upgrade)
    store = await open_store(config.database_url)
    try:
        maildir = MaildirStore(config.maildir_root, config.server.hostname)
        await _recover_spool(build_services(config, store, maildir, SystemClock()))
        await reconcile_mailboxes(build_mailbox_store(config, store, SystemClock()))
        _clear_incoming(config)
    finally:
        await store.close()


def _dkim_signature_of(hook: MsgAuthHook) -> Callable[[bytes], Awaitable[bytes]]:
    async def sign(message: bytes) -> bytes:
        header, _keys = await hook.signer.sign(message)
        return header

    return sign


@dataclass
class RunningServer:
    context: ServerContext
    listeners: Listeners
    runner: DeliveryRunner | None = None
    backups: BackupScheduler | None = None
    notices: SecurityNotices | None = None
    audits: AuditScheduler | None = None

    @property
    def bound(self) -> list[BoundAddress]:
        return self.listeners.bound

    def address(self, kind: str) -> tuple[str, int]:
        found = next(b for b in self.bound if b.kind == kind)
        return found.host, found.port

    async def stop(self) -> None:
        if self.backups is not None:
            await self.backups.stop()  # first: a backup child is stopped, not orphaned
        if self.audits is not None:
            await self.audits.stop()
        await self.listeners.stop()
        if self.notices is not None:
            await self.notices.stop()
        if self.runner is not None:
            await self.runner.stop()
        for hook in self.context.hooks:
            if isinstance(hook, MsgAuthHook):
                hook.close()  # its SPF/DKIM/ARC thread pool
            elif isinstance(hook, SessionCheckHook):
                await hook.close()  # its account-change poll
        self.context.hash_pool.close()
        await self.context.acceptor.close()
        if self.context.notifier is not None:
            await self.context.notifier.close()
        await self.context.store.close()
        log_event("server.stop")


async def start_server(config: Config, sockets: list[ListeningSocket] | None = None,
                       worker: int | None = None, upgrade: UpgradeOptions | None = None) -> RunningServer:
    """Start a server; ``sockets`` and ``worker`` (its index) when this process is one of several
    workers (:mod:`hardmail.server.prefork`): only worker 0 runs the outbound queue. ``upgrade``:
    how a pending schema upgrade is made (the backup before it)."""
    context = await build_context(config, first=worker is None, upgrade=upgrade)
    listeners = Listeners(context)
    try:
        await listeners.start(sockets)
    except BaseException:
        await listeners.stop(grace=0)
        for hook in context.hooks:
            if isinstance(hook, SessionCheckHook):
                await hook.close()
        context.hash_pool.close()
        if context.notifier is not None:
            await context.notifier.close()
        await context.store.close()
        raise
    log_event("server.start", listeners=[f"{b.kind}={b}" for b in listeners.bound], data_dir=str(config.data_dir),
              worker=worker)
    if worker:
        return RunningServer(context, listeners)
    return RunningServer(context, listeners, await _start_runner(config, context), await _start_backups(config),
                         await _start_notices(context), await _start_audits(config, context))


async def _start_backups(config: Config) -> BackupScheduler | None:
    """Scheduled backups, in the one process that also runs the queue (docs/backup.md)."""
    if not config.backup.enabled:
        return None
    scheduler = BackupScheduler(config, clock=SystemClock())
    await scheduler.start()
    return scheduler


async def _start_notices(context: ServerContext) -> SecurityNotices:
    """The security-notice feed, in the one process that also runs the queue (docs/user-notices.md).
    It runs even with every notice off: it keeps the sign-in sources and its cursor up to date."""
    sign = context.delivery.notices.sign if context.delivery is not None else None
    deliver = InboxDelivery(context.acceptor.maildir, context.acceptor.indexer, sign)
    notices = SecurityNotices(context.config, context.store, deliver, context.clock)
    await notices.start()
    return notices


async def _start_audits(config: Config, context: ServerContext) -> AuditScheduler | None:
    """Scheduled security audits, in the one process that also runs the queue (docs/audit.md)."""
    if not config.audit.enabled:
        return None
    scheduler = AuditScheduler(config, lambda: last_own_run_at(context.store), clock=SystemClock())
    await scheduler.start()
    return scheduler


async def _start_runner(config: Config, context: ServerContext) -> DeliveryRunner | None:
    if not config.queue.run_delivery or context.delivery is None:
        return None
    runner = build_runner(config, context.store, context.delivery, context.clock)
    await runner.start()
    return runner


def _reload_tls(server: RunningServer) -> None:
    try:
        server.context.tls.reload()
        log_event("tls.reload", result="success")
    except Exception as exc:
        log_event("tls.reload", level="error", result="failure", detail=str(exc)[:300])


def run_serve(config: Config, on_started: Callable[[RunningServer], None] | None = None,
              upgrade: UpgradeOptions | None = None) -> None:
    """Run the server to the end: in this process, or in ``server.workers`` forked worker processes
    (:mod:`hardmail.server.prefork`) sharing listening sockets bound here; the first worker calls
    ``on_started``. Binding errors (a port in use) are raised here, before any worker starts.
    ``upgrade``: how a pending schema upgrade is made (the backup before it)."""
    count = worker_count(config)
    if count == 1:
        run_loop(serve(config, on_started, upgrade=upgrade))
        return
    configure_logging(config.logging)
    run_loop(prepare_for_workers(config, upgrade))  # every thread it used is joined: safe to fork
    warn_unserved(config)
    sockets = bind_listeners(config, served_kinds())

    def run_worker(index: int) -> int:
        run_loop(serve(config, on_started if index == 0 else None, sockets, index))
        return 0

    try:
        Supervisor(count, run_worker).run()
    finally:
        for listening in sockets:
            listening.sock.close()


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (extra ``speed``), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def serve(config: Config, on_started: Callable[[RunningServer], None] | None = None,
                sockets: list[ListeningSocket] | None = None, worker: int | None = None,
                upgrade: UpgradeOptions | None = None) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads the TLS certificates without dropping sessions."""
    configure_logging(config.logging)
    server = await start_server(config, sockets, worker, upgrade)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, server)
    if worker is not None:
        _join_queue_wakes(server, worker, loop)
    status = StatusKeeper(config.data_dir, worker, server.listeners, None if worker else server.context.store.queue)
    await status.write_once()  # `hardmail status` knows this process once the start is announced
    if on_started is not None:
        on_started(server)
    worker_ready()  # to the supervisor, when this is a worker: from now on a death means a restart
    status.start()
    try:
        await stop.wait()
    finally:
        await status.stop()
        await server.stop()
