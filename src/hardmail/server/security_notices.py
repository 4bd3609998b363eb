"""The security-notice feed: an asyncio task, in exactly one process of the server (the one that
runs the outbound queue: the only process, or worker 0), that turns the login history into
notices delivered into the users' INBOXes (docs/user-notices.md).

- Every ``notices.poll_interval`` seconds (or at once after :meth:`SecurityNotices.wake`) it reads
  the login history after a cursor kept in the settings table (``notices.feed_cursor``; the
  migration that made the feed seeds it at the newest row, so that an upgraded server does not
  write to everybody about old sign-ins); a database without one (new when migrated) starts at 0.
- A successful ``login`` row is a sign-in: its source's network (``/ipv4_prefix``,
  ``/ipv6_prefix``) is compared with the sources the account signed in from before; the source is
  notified when no known source is in that network, and recorded after the notice is delivered
  (a crash between the two sends it again, never loses it). The first sign-in of an account made
  in the last 7 days (no source known at all) sets its baseline without a notice (there is nothing
  it could be new against), unless ``notices.first_sign_in`` is on; an older account's first
  sign-in (dormant, or imported) is notified.
- A ``login`` row with result ``refused`` (the correct password, refused by the login rules:
  two-factor authentication on, must change, expired) gets the refused-sign-in notice at once:
  whoever tried knows the password (``notices.refused_sign_in``).
- ``app-password-created``, ``2fa-disabled`` and ``password-changed`` rows get the
  credential-change notice. ``password-set`` (the password given when an admin makes the account)
  gets none: the user learns it from the admin, and the mailbox is new.
- The cursor moves after each batch, or up to the event before a notice that could not be
  delivered (that one is tried again at the next poll): a crash re-sends at most one batch of
  notices and never skips an event.
- The weekly digest goes out once the week's slot (``notices.digest_weekday`` at 07:00, local
  time) has passed, once per ISO week: the week sent is kept in the settings table
  (``notices.digest_week``), written before the digests go (a crash skips the rest of that
  week's digests rather than sending them twice).
- Delivery: into the account's INBOX only (never its aliases), durably (files fsynced, as any
  delivery), indexed at once so IMAP sees it, DKIM-signed when the From domain has keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo

from hardmail.config.schema import Config
from hardmail.core.clock import Clock
from hardmail.delivery.local_index import DeliveryIndexer, delivered_files
from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.security_notice_text import (
    Digest,
    NoticeHeader,
    SourceSummary,
    credential_notice,
    digest_notice,
    refused_sign_in_notice,
    sign_in_notice,
    utc,
)
from hardmail.ops.log import log_event
from hardmail.server.child_job import LoopTask
from hardmail.store.ports import Store
from hardmail.store.ports_credentials import LoginEvent
from hardmail.store.ports_security import FeedEvent

CURSOR_KEY = "notices.feed_cursor"
DIGEST_WEEK_KEY = "notices.digest_week"
CREDENTIAL_KINDS = frozenset({"app-password-created", "2fa-disabled", "password-changed"})
BATCH = 200  # login-history rows read at a time
DIGEST_HOUR = 7  # local time of the weekly digest
DIGEST_DAYS = 7
NEW_ACCOUNT_DAYS = 7  # an account younger than this has its first sign-in taken as the baseline
RETRY_AFTER_ERROR = 30.0  # seconds before the next poll after an error of the store
Sign = Callable[[bytes], Awaitable[bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_of(ip: str, ipv4_prefix: int, ipv6_prefix: int) -> Network | None:
    """The network of ``ip`` that counts as one source (None for a text that is no address)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = ipv4_prefix if address.version == 4 else ipv6_prefix
    return ipaddress.ip_network(f"{address}/{prefix}", strict=False)


def in_known_network(network: Network | None, ip: str, known: Iterable[str], ipv4_prefix: int,
                     ipv6_prefix: int) -> bool:
    """Whether ``ip`` (in ``network``) is, or is in the network of, a source already known."""
    if network is None:
        return ip in known
    return any(network_of(source, ipv4_prefix, ipv6_prefix) == network for source in known)


def digest_slot(now: datetime, weekday: int) -> datetime:
    """This ISO week's digest time (``weekday`` at 07:00 in ``now``'s zone)."""
    monday = (now - timedelta(days=now.weekday())).date()
    day = monday + timedelta(days=weekday)
    return datetime(day.year, day.month, day.day, DIGEST_HOUR, tzinfo=now.tzinfo)


def week_key(moment: datetime) -> str:
    year, week, _day = moment.isocalendar()
    return f"{year}-W{week:02d}"


def summarize(events: Sequence[LoginEvent], results: frozenset[str]) -> list[SourceSummary]:
    """Login rows of ``results``, by source address, the most frequent first."""
    grouped: dict[str, list[LoginEvent]] = {}
    for event in events:
        if event.kind == "login" and event.result in results:
            grouped.setdefault(event.client_ip, []).append(event)
    summaries = [SourceSummary(ip, len(rows), tuple(sorted({r.protocol for r in rows if r.protocol})),
                               max(utc(r.at) for r in rows)) for ip, rows in grouped.items()]
    return sorted(summaries, key=lambda s: (-s.count, s.ip))


class InboxDelivery:
    """Puts a notice into one account's INBOX: files fsynced, the index updated, DKIM-signed first
    when ``sign`` is given (it returns the signature fields, empty when the domain has no keys)."""

    def __init__(self, maildir: MaildirStore, indexer: DeliveryIndexer | None, sign: Sign | None = None) -> None:
        self.maildir = maildir
        self.indexer = indexer
        self.sign = sign

    async def __call__(self, account: str, message: bytes) -> None:
        if self.sign is not None:
            message = await self.sign(message) + message
        written = await asyncio.to_thread(self.maildir.deliver, [account], message)
        if self.indexer is not None:
            await self.indexer.index(delivered_files([account], written, None, self.maildir.mailbox_path),
                                     None, len(message))


Deliver = Callable[[str, bytes], Awaitable[None]]


class SecurityNotices:
    """The feed and the weekly digest; see the module docstring."""

    def __init__(self, config: Config, store: Store, deliver: Deliver, clock: Clock, *,
                 zone: tzinfo | None = None) -> None:
        self.config = config
        self.settings = config.notices
        self.store = store
        self.deliver = deliver
        self.clock = clock
        self.zone = zone  # None: this process's local time zone
        self._wake = asyncio.Event()
        self._task = LoopTask()
        self._digest_week: str | None = None
        self.polls = 0  # finished polls (tests wait on it)

    # life-cycle

    async def start(self) -> None:
        log_event("notices.started", poll_interval=self.settings.poll_interval,
                  new_sign_in=self.settings.new_sign_in, changes=self.settings.credential_changes,
                  weekly_digest=self.settings.weekly_digest)
        self._task.start(self._loop(), "security-notices")

    async def stop(self) -> None:
        await self._task.stop()

    def wake(self) -> None:
        """Look at the login history now (a login was just recorded)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            delay = self.settings.poll_interval
            try:
                await self.poll_once()
            except Exception as exc:  # the store is away, a disk is full: try again later
                log_event("notices.error", level="error", error=type(exc).__name__, detail=str(exc)[:200],
                          hint="notices are sent once the cause is gone; no event is skipped")
                delay = max(delay, RETRY_AFTER_ERROR)
            self.polls += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def poll_once(self) -> int:
        """Handle every login-history row after the cursor, then the digest when due; notices sent."""
        sent = await self.follow_feed()
        if self.settings.weekly_digest:
            sent += await self.digest_if_due()
        return sent

    # the feed

    async def cursor(self) -> int:
        """The id of the last row handled; 0 when there is none yet (the migration that made the
        feed sets it on a database with history; an empty one has none, and all it gets is new)."""
        stored = await self.store.get_setting(CURSOR_KEY)
        return int(stored) if stored is not None and stored.strip().isdigit() else 0

    async def follow_feed(self) -> int:
        cursor = await self.cursor()
        sent = 0
        while batch := await self.store.security.login_events_after(cursor, BATCH):
            done, count = await self._handle_batch(batch)
            sent += count
            if done is not None:
                cursor = done
                await self.store.set_setting(CURSOR_KEY, str(cursor))
            if done != batch[-1].id or len(batch) < BATCH:
                break
        return sent

    async def _handle_batch(self, batch: Sequence[FeedEvent]) -> tuple[int | None, int]:
        """(the id of the last row handled, notices sent); stops before a notice not delivered."""
        done: int | None = None
        sent = 0
        known: dict[str, list[str]] = {}  # sources read in this batch, kept up to date
        for row in batch:
            try:
                sent += await self._handle(row, known)
            except Exception as exc:
                log_event("notices.failed", level="error", account=row.event.account, kind=row.event.kind,
                          event_id=row.id, error=type(exc).__name__, detail=str(exc)[:200],
                          hint="tried again at the next poll")
                break
            done = row.id
        return done, sent

    async def _handle(self, row: FeedEvent, known: dict[str, list[str]]) -> int:
        event = row.event
        if event.kind == "login" and event.result == "success":
            return await self._sign_in(row, known)
        if event.kind == "login" and event.result == "refused" and self._wanted(self.settings.refused_sign_in):
            return await self._send(event.account, "refused-sign-in",
                                    lambda header: refused_sign_in_notice(header, event))
        if event.kind in CREDENTIAL_KINDS and self._wanted(self.settings.credential_changes):
            return await self._send(event.account, event.kind, lambda header: credential_notice(header, event))
        return 0

    def _wanted(self, kind_on: bool) -> bool:
        return self.settings.enabled and kind_on

    async def _sign_in(self, row: FeedEvent, known: dict[str, list[str]]) -> int:
        """Notify a sign-in from a new network, then record its source: a crash between the two
        sends that notice again at the next start rather than never."""
        event = row.event
        if event.account not in known:
            known[event.account] = await self.store.security.sign_in_sources(event.account)
        sources = known[event.account]
        network = network_of(event.client_ip, self.settings.ipv4_prefix, self.settings.ipv6_prefix)
        new_network = event.client_ip not in sources and not in_known_network(
            network, event.client_ip, sources, self.settings.ipv4_prefix, self.settings.ipv6_prefix)
        sent = 0
        if new_network and self._wanted(self.settings.new_sign_in) and not await self._baseline(event, sources):
            net = "" if network is None or network.prefixlen == network.max_prefixlen else str(network)
            sent = await self._send(event.account, "new-sign-in", lambda header: sign_in_notice(header, event, net))
        await self.store.security.add_sign_in_source(event.account, event.client_ip, utc(event.at))
        if event.client_ip not in sources:
            sources.append(event.client_ip)
        return sent

    async def _baseline(self, event: LoginEvent, sources: list[str]) -> bool:
        """The first sign-in of a new account (no source known, made in the last NEW_ACCOUNT_DAYS)
        sets its baseline without a notice, unless notices.first_sign_in. A dormant or imported
        account's first sign-in is notified: it may be someone else's first."""
        if sources or self.settings.first_sign_in:
            return False
        account = await self.store.get_account(event.account)
        created = account.created_at if account is not None else None
        return created is None or utc(event.at) - utc(created) < timedelta(days=NEW_ACCOUNT_DAYS)

    async def _send(self, account: str, kind: str, build: Callable[[NoticeHeader], bytes]) -> int:
        if await self.store.get_account(account) is None:
            log_event("notices.skipped", account=account, kind=kind, detail="no such account (removed?)")
            return 0
        await self.deliver(account, build(self._header(account)))
        log_event("notices.sent", account=account, kind=kind)
        return 1

    def _header(self, account: str) -> NoticeHeader:
        sender = self.settings.sender or f"postmaster@{account.rpartition('@')[2]}"
        return NoticeHeader(account, sender, self.config.server.hostname, self.clock.now(), self.zone,
                            self.settings.help_url)

    # the weekly digest

    def local_now(self) -> datetime:
        moment = datetime.fromtimestamp(self.clock.now(), UTC)
        return moment.astimezone(self.zone) if self.zone is not None else moment.astimezone()

    async def digest_if_due(self) -> int:
        """The week's digests, when its slot has passed and they were not sent this ISO week."""
        if not self.settings.enabled:
            return 0
        now = self.local_now()
        if now < digest_slot(now, self.settings.digest_weekday):
            return 0
        week = week_key(now)
        if self._digest_week is None:
            self._digest_week = await self.store.get_setting(DIGEST_WEEK_KEY) or ""
        if self._digest_week == week:
            return 0
        await self.store.set_setting(DIGEST_WEEK_KEY, week)
        self._digest_week = week
        return await self.send_digests(now)

    async def send_digests(self, now: datetime) -> int:
        sent = 0
        accounts = await self.store.security.weekly_digest_accounts()
        for account in accounts:
            try:
                sent += await self._send_digest(account, now)
            except Exception as exc:
                log_event("notices.failed", level="error", account=account, kind="weekly-digest",
                          error=type(exc).__name__, detail=str(exc)[:200])
        log_event("notices.digest", week=week_key(now), accounts=len(accounts), sent=sent)
        return sent

    async def _send_digest(self, account: str, now: datetime) -> int:
        digest = await self.digest_of(account, now)
        return await self._send(account, "weekly-digest", lambda header: digest_notice(header, digest))

    async def digest_of(self, account: str, now: datetime) -> Digest:
        end = now.astimezone(UTC)
        start = end - timedelta(days=DIGEST_DAYS)
        events = await self.store.security.login_events_between(account, start, end)
        app_passwords = await self.store.credentials.list_app_passwords(account)
        return Digest(start, end, summarize(events, frozenset({"success"})),
                      summarize(events, frozenset({"failure", "refused"})), app_passwords)
