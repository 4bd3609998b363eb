"""The access-control session hook: IP ranges, bans, the failed-login tarpit, connection and rate
limits, and the relay rules the RCPT decision needs.

It gathers facts (store look-ups, counters, open connections) and asks the pure policy modules
(:mod:`hardmail.policy.access`, :mod:`hardmail.policy.bans`, :mod:`hardmail.policy.ratelimit`).
A denied source is refused at connect. A ban made for login abuse (scope ``auth``) refuses AUTH,
before any password hashing, and connections to the submission ports from a source that never
logged in successfully; the MX port keeps taking mail from it, and a source with a successful
login history keeps logging in to the accounts it is known for (:meth:`AccessHook.gate_for`, see
:mod:`hardmail.policy.login_guard`). A ban for everything (an administrator's) refuses every
connection. Attacks across sources (one account guessed from many addresses, password spraying)
raise guards and make ``auth.account_under_attack`` / ``auth.spray_detected`` events, counted in
:mod:`hardmail.ops.counters`.

Accepting a connection, or a recipient of an unauthenticated session, costs no store round trip
of its own apart from the periodic refreshes below and a prune every ``PRUNE_EVERY_SECONDS`` (the
sender-domain look-up of the relay rules goes through the server's read-through cache). What
lives where:

- IP ranges: loaded from the store at most every ``RANGE_CACHE_SECONDS``; the winning range is
  remembered per address (:class:`RangeMatcher`), and the trusted networks are parsed once.
- Bans: a snapshot of the bans in force, loaded with one query at most every
  ``BAN_REFRESH_SECONDS`` (one load at a time, however many sessions want it) and updated at
  once by this process's own bans, so a ban applies to the very next connection. A ban or unban
  made by another process (the CLI, another server process) applies within that time.
- Open connections and new connections per minute: counted in this process's memory
  (:class:`NewConnectionCounter`), so these limits hold per server process.
- Failed logins, known login sources and the message and recipient counters of authenticated
  accounts: in the store, shared by every process (written on AUTH, MAIL and RCPT of
  authenticated sessions, not on the accept path of unauthenticated mail).

Each automatic ban is logged as one ``access.ban`` event whose first fields are fixed (see
docs/brute-force.md), so fail2ban can match it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from hardmail.auth.audit import audited, unavailable
from hardmail.auth.user_label import is_label
from hardmail.config.schema import Config
from hardmail.core.address import Address, AddressError, parse_address_arg
from hardmail.core.clock import Clock
from hardmail.core.replies import AUTH_ENCRYPTION_REQUIRED, AUTH_TEMP_FAILURE, Reply
from hardmail.delivery.recipients import Resolution, is_local_domain
from hardmail.ops.counters import count
from hardmail.ops.log import log_event
from hardmail.policy.access import (
    DEFAULT_RANGES,
    IpRange,
    RangeMatcher,
    connection_allowed,
    effective_ranges,
    in_parsed_networks,
    matching_range,
    parse_networks,
)
from hardmail.policy.bans import (
    Ban,
    BanDecision,
    BanIndex,
    BanRules,
    FailureStats,
    active_bans,
    address_key,
    ban_subjects,
    decide_bans,
    longest,
    new_ban,
    subnet_of,
    tarpit_delay,
)
from hardmail.policy.login_guard import (
    Admission,
    admission,
    auth_refused_by_ban,
    connection_refused_by_ban,
    guard_signals,
)
from hardmail.policy.ratelimit import (
    DAY,
    HOUR,
    AccountUsage,
    LimitRules,
    NewConnectionCounter,
    concurrency_verdict,
    message_verdict,
    new_connection_verdict,
    recipient_verdict,
    window_start,
)
from hardmail.policy.relay import RelayRules, in_networks
from hardmail.proto.smtp.events import MailParams
from hardmail.server.context import ServerContext
from hardmail.server.counter_leases import CounterLeases
from hardmail.server.hooks import SessionFacts, SessionHook
from hardmail.store.ports import Store
from hardmail.store.ports_access import AuthFailure

CONNECTION_DENIED = Reply(554, "5.7.1", "Connections from your address are not accepted here")
BANNED = Reply(421, "4.7.0", "Too many failed logins from your address; try again later")
PEER_UNKNOWN = Reply(421, "4.7.0", "Cannot tell your address; try again later")
RANGE_CACHE_SECONDS = 10.0  # ranges changed with the CLI apply within this time
BAN_REFRESH_SECONDS = 10.0  # bans and unbans made with the CLI apply within this time
PRUNE_EVERY_SECONDS = 600.0
LOGIN_HISTORY_SECONDS = 60.0  # how long "has this address ever logged in" is remembered per address

Sleeper = Callable[[float], Awaitable[None]]
T = TypeVar("T")


def ban_rules(config: Config) -> BanRules:
    bans = config.access.bans
    return BanRules(failures=bans.failures, window=bans.window, durations=tuple(bans.durations),
                    forget_after=bans.forget_after, subnet_failures=bans.subnet_failures,
                    spray_accounts=bans.spray_accounts, guessing_sources=bans.guessing_sources,
                    spray_subnet_accounts=bans.spray_subnet_accounts,
                    spray_global_accounts=bans.spray_global_accounts,
                    spray_global_sources=bans.spray_global_sources, guard_tarpit=bans.guard_tarpit,
                    never_ban=tuple(bans.never_ban), tarpit_step=bans.tarpit_step, tarpit_max=bans.tarpit_max)


def limit_rules(config: Config) -> LimitRules:
    return LimitRules(**config.access.limits.model_dump())


def account_key(username: str) -> str:
    """The normalised account a login tried, or the keyed label (``~h:...``) it is logged under;
    "" when the user name is neither."""
    if is_label(username):
        return username
    try:
        return parse_address_arg(username).key
    except AddressError:
        return ""


def log_ban(ban: Ban, source: str) -> None:
    """The fixed-format ban line: ``"event": "access.ban", "subject": "<address or CIDR>", ...``."""
    log_event("access.ban", level="warning", subject=ban.subject, kind=ban.kind, offence=ban.offences,
              expires=datetime.fromtimestamp(ban.expires_at, UTC).isoformat(timespec="seconds"),
              source=source, reason=ban.reason, scope=ban.scope)


class Refreshed(Generic[T]):
    """A value loaded from the store and reused for ``seconds`` (on the monotonic clock).

    One load at a time (single flight): callers that find the value stale while a load runs wait
    for that load and share its result, so many sessions arriving at refresh time cause one query.
    """

    def __init__(self, load: Callable[[], Awaitable[T]], initial: T, seconds: float) -> None:
        self.value = initial
        self.seconds = seconds
        self._load = load
        self._until = float("-inf")  # monotonic time the value goes stale
        self._loads = 0  # loads completed
        self._expiries = 0  # expire() calls
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Refreshed({self.value!r}, loads={self._loads})"

    def expire(self) -> None:
        """Load again at the next :meth:`get` (also when a load running now ends)."""
        self._until = float("-inf")
        self._expiries += 1

    async def get(self, monotonic: float) -> T:
        """The value, loaded first when it is ``seconds`` old (``monotonic``: the time now)."""
        if monotonic < self._until:
            return self.value
        seen = self._loads
        async with self._lock:
            if self._loads == seen:  # no load ended while this caller waited: it loads
                expiries = self._expiries
                self.value = await self._load()
                self._loads += 1
                if expiries == self._expiries:
                    self._until = monotonic + self.seconds
        return self.value


def _same_ranges(old: Sequence[IpRange], new: Sequence[IpRange]) -> bool:
    """Equal, the built-in flag (not part of IpRange equality) included."""
    return len(old) == len(new) and all(a == b and a.builtin == b.builtin for a, b in zip(old, new, strict=True))


class AccessHook(SessionHook):
    def __init__(self, store: Store, config: Config, clock: Clock, sleeper: Sleeper = asyncio.sleep, *,
                 ban_refresh_seconds: float = BAN_REFRESH_SECONDS) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.sleeper = sleeper
        self.bans = ban_rules(config)
        self.limits = limit_rules(config)
        self._positions = CounterLeases(store.access)
        self._ranges = Refreshed(self._load_ranges, RangeMatcher(DEFAULT_RANGES), RANGE_CACHE_SECONDS)
        self._banned = Refreshed(self._load_bans, BanIndex(), ban_refresh_seconds)
        self._own_bans: dict[str, tuple[int, Ban]] = {}  # subject -> (put number, ban) put by this process
        self._ban_puts = 0
        self._trusted = parse_networks(config.relay.trusted_networks)
        self._new_connections = NewConnectionCounter()
        self._next_prune = float("-inf")
        self._open_ip: Counter[str] = Counter()
        self._open_subnet: Counter[str] = Counter()
        self._counted: dict[str, tuple[str, str]] = {}  # session id -> (ip, subnet)
        self._logins_from: dict[str, tuple[float, bool]] = {}  # address key -> (monotonic until, any login)
        self._guarded: dict[str, float] = {}  # account -> time its guard goes down
        self._campaign_until = float("-inf")  # time the global guard (spraying campaign) goes down

    def __repr__(self) -> str:
        return f"AccessHook(open={sum(self._open_ip.values())}, bans={len(self._banned.value)})"

    @staticmethod
    def keys_of(ip: str) -> tuple[str, str] | None:
        """(address key, subnet) of a peer: IPv4 /32 and /24, IPv6 /64 and /48; None when ``ip``
        is no address (a peer the socket could not name)."""
        try:
            return address_key(ip), subnet_of(ip)
        except ValueError:
            return None

    # look-ups ------------------------------------------------------------------------------
    async def _load_ranges(self) -> RangeMatcher:
        """The stored and built-in ranges; the current matcher (and its memo) when they are unchanged."""
        ranges = effective_ranges(await self.store.access.list_ranges())
        current = self._ranges.value
        return current if _same_ranges(current.ranges, ranges) else RangeMatcher(ranges)

    async def ranges(self) -> list[IpRange]:
        return list((await self._ranges.get(self.clock.monotonic())).ranges)

    def forget_cached_ranges(self) -> None:
        self._ranges.expire()

    async def range_for(self, ip: str) -> IpRange | None:
        matcher = await self._ranges.get(self.clock.monotonic())
        return matcher.match(ip, self.clock.now())

    async def _load_bans(self) -> BanIndex:
        """The bans in force, with one query; plus this process's bans put while it ran."""
        puts_before = self._ban_puts
        index = BanIndex(await self.store.access.list_active_bans(self.clock.now()))
        for subject, (put, ban) in list(self._own_bans.items()):
            if put > puts_before:  # put while the query ran, which may have missed it
                index.put(ban)
            else:  # in the store before the query began: the store's answer (an unban too) counts
                del self._own_bans[subject]
        return index

    def forget_cached_bans(self) -> None:
        """Load the bans from the store at the next look-up (e.g. after a ban made elsewhere)."""
        self._banned.expire()

    async def active_ban(self, ip: str) -> Ban | None:
        index = await self._banned.get(self.clock.monotonic())
        return index.find(ip, self.clock.now())

    async def relay_rules(self, ip: str, sender: str) -> RelayRules:
        domain = sender.rpartition("@")[2]
        sender_local = bool(sender) and await is_local_domain(self.store, domain)
        trusted = in_parsed_networks(ip, self._trusted)
        return RelayRules(await self.range_for(ip), sender_local=sender_local, trusted=trusted)

    # connect and disconnect ----------------------------------------------------------------
    async def on_connect(self, facts: SessionFacts) -> Reply | None:
        ip = facts.peer_ip
        await self._prune_now_and_then()
        keys = self.keys_of(ip)
        if keys is None:  # e.g. "unknown": the socket closed before it was named
            log_event("access.unknown_peer", level="warning", session=facts.session_id, peer=ip)
            return PEER_UNKNOWN
        if not connection_allowed(await self.range_for(ip), facts.listener):
            log_event("access.denied", session=facts.session_id, peer=ip, listener=facts.listener)
            return CONNECTION_DENIED
        ban = await self.active_ban(ip)
        if ban is not None and connection_refused_by_ban(ban, facts.listener, await self.has_logged_in_from(keys[0])):
            log_event("access.refused", session=facts.session_id, peer=ip, subject=ban.subject, stage="connect")
            return BANNED
        return self._connection_limits(facts, keys)

    def _connection_limits(self, facts: SessionFacts, keys: tuple[str, str]) -> Reply | None:
        """Open connections and new connections per minute, both counted in this process."""
        ip, subnet = keys
        verdict = concurrency_verdict(self._open_ip[ip], self._open_subnet[subnet], self.limits)
        if verdict is None:
            count = self._new_connections.add(ip, subnet, self.clock.now())
            verdict = new_connection_verdict(count, self.limits)
        if verdict is not None:
            log_event("access.limit", session=facts.session_id, peer=facts.peer_ip, reason=verdict.reason)
            return verdict.reply
        self._open_ip[ip] += 1
        self._open_subnet[subnet] += 1
        self._counted[facts.session_id] = (ip, subnet)
        return None

    async def on_disconnect(self, facts: SessionFacts) -> None:
        counted = self._counted.pop(facts.session_id, None)
        if counted is None:
            return
        ip, subnet = counted
        self._open_ip[ip] -= 1
        self._open_subnet[subnet] -= 1
        if self._open_ip[ip] <= 0:
            del self._open_ip[ip]
        if self._open_subnet[subnet] <= 0:
            del self._open_subnet[subnet]

    async def _prune_now_and_then(self) -> None:
        if self.clock.monotonic() < self._next_prune:
            return
        self._next_prune = self.clock.monotonic() + PRUNE_EVERY_SECONDS
        keep = max(self.bans.window, 2 * DAY)
        await self.store.access.prune(self.clock.now() - keep)

    # authentication ------------------------------------------------------------------------
    async def has_logged_in_from(self, key: str) -> bool:
        """Whether any account logged in from this address key (remembered a while per address;
        asked only for banned sources)."""
        now = self.clock.monotonic()
        cached = self._logins_from.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        if len(self._logins_from) > 10_000:
            self._logins_from.clear()
        found = await self.store.access.has_logged_in_from(key)
        self._logins_from[key] = (now + LOGIN_HISTORY_SECONDS, found)
        return found

    async def before_auth(self, facts: SessionFacts, mechanism: str) -> Reply | None:
        # AUTH is rare next to connections and costs a hash anyway: ask the store too, so that a ban
        # made by another process applies here at once, not at the next snapshot.
        keys = self.keys_of(facts.peer_ip)
        try:
            ban = await self.active_ban(facts.peer_ip)
            if ban is None or ban.scope != "all":  # a ban for everything made elsewhere wins over a login ban
                ban = longest(found for found in (ban, await self._stored_ban(facts.peer_ip)) if found is not None)
            refused = ban is not None and keys is not None and auth_refused_by_ban(
                ban, await self.has_logged_in_from(keys[0]))
            found = await self.range_for(facts.peer_ip)
        except Exception as exc:  # the bans or ranges cannot be read: AUTH cannot go on (RFC 4954 6)
            count("auth.unavailable")
            log_event("auth.unavailable", level="error", session=facts.session_id, read="bans or ranges",
                      error=type(exc).__name__)
            return AUTH_TEMP_FAILURE
        if refused and ban is not None:
            log_event("access.refused", session=facts.session_id, peer=facts.peer_ip, subject=ban.subject,
                      stage="auth")
            return BANNED
        if found is not None and not found.builtin and found.tls_for_auth and facts.tls is None:
            return AUTH_ENCRYPTION_REQUIRED
        return None

    def gate_for(self, ip: str) -> SourceGate:
        """The login gate of a client at ``ip`` (see :mod:`hardmail.auth.gate`)."""
        return SourceGate(self, ip)

    def guarded(self, account: str) -> bool:
        """Whether ``account``'s guard is up (under attack itself, or a spraying campaign is on)."""
        now = self.clock.now()
        return now < self._campaign_until or now < self._guarded.get(account, float("-inf"))

    async def after_auth(self, facts: SessionFacts, username: str, success: bool, reason: str) -> Reply | None:
        keys, now = self.keys_of(facts.peer_ip), self.clock.now()
        if keys is None:
            return None
        ip, subnet = keys  # failures and known sources are counted per address key (IPv6: the /64)
        account = account_key(username)
        if success:
            await audited("known-source", self.store.access.remember_source(account or username, ip, now))
            self._logins_from.pop(ip, None)
            return None
        if not await audited("failure-record", self.store.access.record_failure(AuthFailure(now, ip, subnet, account))):
            return None  # nothing to judge it by: the login failed, the reply stays as it is
        try:
            stats = await self.store.access.failure_stats(ip, subnet, account, now - self.bans.window)
        except Exception as exc:  # as above: degrade, never fail the reply for it
            log_event("access.stats_error", level="error", session=facts.session_id, error=type(exc).__name__)
            return None
        self._watch_attacks(facts.session_id, account, stats, now)
        return await self._judge(facts, stats)

    async def _judge(self, facts: SessionFacts, stats: FailureStats) -> Reply | None:
        """Ban by every rule the failure trips (see :func:`decide_bans`), else the tarpit."""
        decisions = decide_bans(facts.peer_ip, stats, self.bans)
        for decision in decisions:
            ban, made = await self._ban(decision, "auto")
            if made and decision.kind == "subnet-spraying":
                count("auth.spray_detected")
                log_event("auth.spray_detected", level="warning", session=facts.session_id, scope="subnet",
                          subject=ban.subject, accounts=stats.accounts_from_subnet, response="subnet banned for AUTH")
        if decisions:
            return BANNED
        delay = tarpit_delay(stats.ip_failures - 1, self.bans)  # the first failure costs nothing
        if delay > 0:
            await self.sleeper(delay)
        return None

    def _watch_attacks(self, session: str, account: str, stats: FailureStats, now: float) -> None:
        """Raise the account's guard (distributed guessing) or every account's (a spraying campaign)."""
        signals = guard_signals(account, stats, self.bans)
        until = now + self.bans.window
        if signals.account_under_attack:
            if now >= self._guarded.get(account, float("-inf")):
                count("auth.account_under_attack")
                log_event("auth.account_under_attack", level="warning", session=session, account=account,
                          sources=stats.ips_for_account, response="unknown sources slowed down")
            self._guarded[account] = until
        if signals.spraying_campaign:
            if now >= self._campaign_until:
                count("auth.spray_detected")
                log_event("auth.spray_detected", level="warning", session=session, scope="global",
                          accounts=stats.accounts_total, sources=stats.sources_total,
                          response="unknown sources slowed down for every account")
            self._campaign_until = until
        if len(self._guarded) > 10_000:  # forget guards that are down
            self._guarded = {name: end for name, end in self._guarded.items() if end > now}

    async def _stored_ban(self, ip: str) -> Ban | None:
        try:
            subjects = ban_subjects(ip)
        except ValueError:
            return None
        return longest(active_bans(await self.store.access.get_bans(subjects), self.clock.now()))

    async def ban(self, decision: BanDecision, source: str) -> Ban:
        return (await self._ban(decision, source))[0]

    async def _ban(self, decision: BanDecision, source: str) -> tuple[Ban, bool]:
        """The ban in force on the subject, and whether it was made now (not already active)."""
        now = self.clock.now()
        found = await self._previous_bans(decision.subject, source)
        previous = found[0] if found else None
        if source == "auto" and previous is not None and previous.expires_at > now:
            self._hold_own_ban(previous)  # already banned (by another process): no second offence
            return previous, False
        ban = new_ban(decision, previous, now, self.bans)
        if source == "auto":  # a full disk must not turn a failed login into 451: the ban holds here
            await audited("ban", self.store.access.put_ban(ban))
        else:
            await self.store.access.put_ban(ban)
        self._hold_own_ban(ban)
        log_ban(ban, source)
        return ban, True

    async def _previous_bans(self, subject: str, source: str) -> list[Ban]:
        """The stored bans of ``subject``; for an automatic ban, the ones this process holds when
        the store cannot be read (the ban is still made, in this process)."""
        try:
            return await self.store.access.get_bans([subject])
        except Exception as exc:  # degrade for automatic bans only; an admin's ban reports the error
            if source != "auto":
                raise
            log_event("access.stats_error", level="error", read="bans", error=type(exc).__name__)
            held = self._own_bans.get(subject)
            return [held[1]] if held is not None else []

    def _hold_own_ban(self, ban: Ban) -> None:
        """Apply ``ban`` in this process at once, and through a snapshot load that began before
        the store had it (see :meth:`_load_bans`)."""
        self._ban_puts += 1
        self._own_bans[ban.subject] = (self._ban_puts, ban)
        self._banned.value.put(ban)

    # message and recipient rates -----------------------------------------------------------
    async def _take_one(self, account: str, amount_kind: str) -> tuple[int, int]:
        """Count one more message or recipient and return the hour and day counts before it.

        Take a position first, then judge it: two sessions of one account racing at the limit
        cannot both pass (a check followed by a separate increment would let them). Positions
        come from blocks reserved in the store (:mod:`hardmail.server.counter_leases`). A message
        counts at MAIL FROM, whether or not it is sent in the end.
        """
        now = self.clock.now()
        per_hour, per_day = ((self.limits.messages_per_hour, self.limits.messages_per_day) if amount_kind == "messages"
                             else (self.limits.recipients_per_hour, self.limits.recipients_per_day))
        hour = await self._positions.take(f"{amount_kind}:{account}:h", window_start(now, HOUR), per_hour)
        day = await self._positions.take(f"{amount_kind}:{account}:d", window_start(now, DAY), per_day)
        return hour, day

    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        if facts.account is None:
            return None
        hour, day = await self._take_one(facts.account, "messages")
        verdict = message_verdict(AccountUsage(messages_hour=hour, messages_day=day), self.limits)
        if verdict is not None:
            log_event("access.limit", session=facts.session_id, peer=facts.peer_ip, account=facts.account,
                      reason=verdict.reason)
            return verdict.reply
        return None

    async def on_rcpt(self, facts: SessionFacts, sender: str, recipient: Address,
                      resolution: Resolution) -> Reply | None:
        if facts.account is None:
            return None
        hour, day = await self._take_one(facts.account, "recipients")
        verdict = recipient_verdict(AccountUsage(recipients_hour=hour, recipients_day=day), self.limits)
        if verdict is not None:
            log_event("access.limit", session=facts.session_id, peer=facts.peer_ip, account=facts.account,
                      reason=verdict.reason)
            return verdict.reply
        return None


class SourceGate:
    """The :class:`hardmail.auth.gate.LoginGate` of one client address: bans with the owner
    exemption, the guard's delay for unknown sources, and the known-pair hashing lane."""

    def __init__(self, hook: AccessHook, ip: str) -> None:
        self.hook = hook
        self.ip = ip
        keys = hook.keys_of(ip)
        self.source = keys[0] if keys is not None else ""

    def __repr__(self) -> str:
        return f"SourceGate({self.source!r})"

    async def admit(self, account: str) -> Admission:
        hook = self.hook
        try:
            ban = await hook.active_ban(self.ip)
            known = bool(self.source and account) and await hook.store.access.is_known_source(account, self.source)
        except Exception as exc:  # the store cannot be read: AUTH cannot go on (454 4.7.0)
            raise unavailable("bans or known sources", exc) from None
        verdict = admission(ban=ban, known_pair=known, guarded=hook.guarded(account), rules=hook.bans)
        if verdict.delay > 0:
            log_event("auth.guard_delay", peer=self.ip, account=account, seconds=verdict.delay, reason=verdict.reason)
            await hook.sleeper(verdict.delay)
        return verdict


def access_hook_of(ctx: ServerContext) -> AccessHook | None:
    return next((hook for hook in ctx.hooks if isinstance(hook, AccessHook)), None)


async def relay_rules_for(ctx: ServerContext, ip: str, sender: str) -> RelayRules:
    """The relay rules of a session's client (built-in ranges when no access hook is installed)."""
    hook = access_hook_of(ctx)
    if hook is not None:
        return await hook.relay_rules(ip, sender)
    found = matching_range(DEFAULT_RANGES, ip, ctx.clock.now())
    return RelayRules(found, trusted=in_networks(ip, ctx.config.relay.trusted_networks))
