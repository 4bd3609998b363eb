"""Authentication shared by every protocol: look up, verify off the loop, apply the login rules,
upgrade hashes, record the attempt.

Unknown users, disabled accounts, wrong passwords and app passwords used outside their scope cost
the same hashing work and produce the same outcome for the client; only the log reason differs.
A correct main password can still be refused over a mail protocol (two-factor authentication on,
must change, expired, see :mod:`hardmail.policy.login`): that too looks exactly like a wrong
password to the client (same outcome, same hashing work: a refused login is never put in the
verify cache); the reason goes to the login history (result ``refused``) and the outcome's
``notice`` carries the text for the user's notice. A user name that is no account is logged and
recorded only as its keyed label (:mod:`hardmail.auth.user_label`).

Once the user name is known and before any hashing, the :class:`hardmail.auth.gate.LoginGate`
of the client decides: refused (a banned source), slowed down (an account under attack), and the
hashing lane (known source/account pairs first). Audit writes never fail a login
(:mod:`hardmail.auth.audit`); a store that cannot be read raises ``AuthUnavailable``.

A legacy or outdated hash is replaced by an Argon2id one with the configured parameters at the
first successful login, and the SCRAM secrets are derived then when missing (none when SASLprep
refuses the password) or made with another iteration count. That upgrade is a compare-and-swap on
the hash that was verified, so it never undoes a password change made meanwhile, and it is
housekeeping: whatever goes wrong in it is logged and the login stands.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field, replace

from hardmail.auth.app_passwords import app_password_digest, usable_for
from hardmail.auth.audit import audited, unavailable
from hardmail.auth.events import now_utc, record_event
from hardmail.auth.gate import LoginGate, OpenGate
from hardmail.auth.hashing import VerifyResult
from hardmail.auth.legacy import scheme_of
from hardmail.auth.pool import DEFAULT_LANE, HashPool, Lane
from hardmail.auth.scram import ScramSecrets, derive_secrets_or_none
from hardmail.auth.user_label import hashed_label, label_key
from hardmail.auth.verify_cache import verify_cache_for
from hardmail.config.schema import Config, PasswordPolicySection
from hardmail.core.address import AddressError, parse_address_arg
from hardmail.core.clock import Clock, SystemClock
from hardmail.ops.log import log_event
from hardmail.policy.login import LoginRefusal, main_password_refusal
from hardmail.store.ports import Account, Store
from hardmail.store.ports_credentials import AppPassword, CredentialState, LoginEvent


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    account: str | None  # the authenticated account address, None on failure
    reason: str  # for the log: "ok", "unknown user", "wrong password", "account disabled", ...
    notice: str | None = None  # for the user's notice (correct credentials refused); never the wire
    via: str = ""  # "password", "app-password" or "scram" on success
    app_password_id: int | None = None  # the app password used (so that revoking it ends the session)
    user: str = ""  # the name tried as logs show it: the account's address, or its ~h: label
    gate_refused: bool = False  # refused by the client's gate before any password check


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """Where a login comes from, for the rules (protocol) and the login history."""

    protocol: str = "smtp"  # "smtp", "imap", "pop3"
    client_ip: str = ""
    mechanism: str = ""
    tls_version: str = ""


@dataclass(frozen=True, slots=True)
class LoginRules:
    policy: PasswordPolicySection = field(default_factory=PasswordPolicySection)
    scram_iterations: int = 10000
    label_key: bytes = field(default_factory=lambda: label_key(None), repr=False)

    @classmethod
    def from_config(cls, config: Config) -> LoginRules:
        return cls(config.auth.password_policy, config.auth.scram.iterations, label_key(config.data_dir))

    def label(self, name: str) -> str:
        """How a name that is no account appears in logs and records."""
        return hashed_label(name, self.label_key)


@dataclass(frozen=True, slots=True)
class _Login:
    """One attempt's collaborators, so that the steps below take one argument."""

    store: Store
    pool: HashPool
    attempt: LoginAttempt
    rules: LoginRules
    clock: Clock
    lane: Lane = DEFAULT_LANE

    async def record(self, account: str, result: str, detail: str, kind: str = "login") -> None:
        attempt = self.attempt
        await record_event(self.store.credentials, LoginEvent(
            at=now_utc(self.clock), account=account, kind=kind, result=result, protocol=attempt.protocol,
            mechanism=attempt.mechanism, client_ip=attempt.client_ip, tls_version=attempt.tls_version,
            detail=detail,
        ))

    async def fail(self, account: str, reason: str, notice: str | None = None) -> AuthOutcome:
        await self.record(account, "refused" if notice else "failure", reason)
        return AuthOutcome(None, reason, notice, user=account)


async def authenticate(
    store: Store,
    pool: HashPool,
    username: str,
    password: str,
    attempt: LoginAttempt | None = None,
    *,
    rules: LoginRules | None = None,
    clock: Clock | None = None,
    gate: LoginGate | None = None,
) -> AuthOutcome:
    """Raises auth.pool.PoolSaturated when hashing capacity is exhausted and
    auth.audit.AuthUnavailable when the store cannot be read (callers reply 454)."""
    login = _Login(store, pool, attempt or LoginAttempt(), rules or LoginRules(), clock or SystemClock())
    try:
        key = parse_address_arg(username).key
    except AddressError:
        key = ""
    account, state, app_password = await _look_up(store, key, password)
    user = account.address if account is not None else await _label_of(login, key, username)
    gate = gate or OpenGate()
    admitted = await gate.admit(user)
    if not admitted.allowed:
        return AuthOutcome(None, admitted.reason, user=user, gate_refused=True)
    login = replace(login, lane=Lane(gate.source, admitted.priority))
    if account is None or state is None:
        await pool.dummy_verify(login.lane)
        return AuthOutcome(None, "unknown user" if key else "user name is not an address", user=user)
    if app_password is not None:
        return await _app_password_login(login, account, app_password)
    return await _main_password_login(login, account, state, password)


async def _look_up(
    store: Store, key: str, password: str
) -> tuple[Account | None, CredentialState | None, AppPassword | None]:
    """The account, its credentials and the app password matching ``password``; AuthUnavailable
    when the store cannot answer."""
    if not key:
        return None, None, None
    try:
        account = await store.get_account(key)
        state = await store.credentials.get_credentials(key) if account is not None else None
        app_password = None
        if account is not None and state is not None:
            app_password = await store.credentials.find_app_password(key, app_password_digest(password))
    except Exception as exc:  # a store that cannot be read: AUTH cannot go on, whatever the cause
        raise unavailable("credentials", exc) from None
    return account, state, app_password


async def _label_of(login: _Login, key: str, username: str) -> str:
    """An alias's address, else the keyed label of the name (never the name itself)."""
    if key:
        try:
            alias = await login.store.get_alias(key)
        except Exception as exc:  # as in _look_up
            raise unavailable("aliases", exc) from None
        if alias is not None:
            return alias.source
    return login.rules.label(username)


async def _app_password_login(login: _Login, account: Account, app_password: AppPassword) -> AuthOutcome:
    now = now_utc(login.clock)
    if not usable_for(app_password, login.attempt.protocol, now):
        await login.pool.dummy_verify(login.lane)  # costs what a wrong password costs
        return await login.fail(account.address, f"app password {app_password.name!r} outside its scope or expired")
    if refused := _refused_account(account):
        await login.pool.dummy_verify(login.lane)  # a right app password must not answer faster than a wrong one
        return await login.fail(account.address, refused)
    await audited("app-password-use",
                  login.store.credentials.touch_app_password(app_password.id, now, login.attempt.client_ip))
    if app_password.last_used_at is None:
        await login.record(account.address, "done", f"app password {app_password.name!r}", "app-password-first-use")
    await login.record(account.address, "success", f"app password {app_password.name!r}")
    return AuthOutcome(account.address, "ok", via="app-password", app_password_id=app_password.id,
                       user=account.address)


def _refused_account(account: Account) -> str:
    """Why the account itself may not log in ("" when it may): disabled, or frozen (with the admin's
    reason, for the login history; the client gets the same 535 as for a wrong password)."""
    if not account.enabled:
        return "account disabled"
    if account.frozen:
        return f"account frozen: {account.frozen_reason}" if account.frozen_reason else "account frozen"
    return ""


async def _main_password_login(
    login: _Login, account: Account, state: CredentialState, password: str
) -> AuthOutcome:
    cache = verify_cache_for(login.pool)
    # An account the rules refuse now (disabled, 2FA turned on, must change, expired since it was
    # cached) pays the full check like a wrong password: a fast refusal would confirm the password.
    cached = _refusal(login, account, state) is None and cache.hit(
        account.address, account.password_hash, password, login.clock)
    result = VerifyResult(ok=True) if cached else await login.pool.verify(account.password_hash, password, login.lane)
    if not result.ok:
        return await login.fail(account.address, "wrong password")
    outcome = await finish_verified_login(login, account, state, via="password")
    if outcome.account is not None:
        if not cached:  # only a login that succeeded: a refused one must cost a full check next time too
            cache.remember(account.address, account.password_hash, password, login.clock)
        await _upgrade_safely(login, account, state, password, result.needs_rehash)
    return outcome


def _refusal(login: _Login, account: Account, state: CredentialState) -> LoginRefusal | str | None:
    """Why the rules refuse a verified main password or SCRAM proof now ("account disabled", "account
    frozen", or the :class:`LoginRefusal`), None when they let it log in."""
    if refused := _refused_account(account):
        return refused
    return main_password_refusal(
        protocol=login.attempt.protocol, two_factor=state.two_factor, must_change=state.must_change,
        changed_at=state.password_changed_at, now=now_utc(login.clock), policy=login.rules.policy,
    )


async def finish_verified_login(login: _Login, account: Account, state: CredentialState, via: str) -> AuthOutcome:
    """The rules after a verified main password or SCRAM proof: enabled, 2FA, must change, expiry."""
    refusal = _refusal(login, account, state)
    if isinstance(refusal, str):
        return await login.fail(account.address, refusal)
    if refusal is not None:  # answered like a wrong password; the reason is for the history only
        return await login.fail(account.address, refusal.reason, refusal.notice_text)
    await login.record(account.address, "success", via)
    return AuthOutcome(account.address, "ok", via=via, user=account.address)


async def _upgrade_safely(
    login: _Login, account: Account, state: CredentialState, password: str, needs_rehash: bool
) -> None:
    """:func:`_upgrade_if_needed`, whose failure is logged (never a secret) and never fails the login."""
    try:
        await _upgrade_if_needed(login, account, state, password, needs_rehash)
    except Exception as exc:  # the password was right: the login stands, the upgrade waits for the next
        log_event("auth.upgrade_error", level="error", account=account.address, error=type(exc).__name__)


async def _upgrade_if_needed(
    login: _Login, account: Account, state: CredentialState, password: str, needs_rehash: bool
) -> None:
    """Re-hash a legacy or outdated hash; derive SCRAM secrets when missing or outdated."""
    scram = None
    if state.scram is None or state.scram.iterations != login.rules.scram_iterations:
        scram = await asyncio.to_thread(derive_secrets_or_none, password, login.rules.scram_iterations)
    if not needs_rehash and scram is None:
        return
    new_hash = await login.pool.hash(password, login.lane) if needs_rehash else account.password_hash
    swapped = await login.store.credentials.upgrade_hash(
        account.address, new_hash, scram, expected_hash=account.password_hash)
    if not swapped:  # the password was changed since it was verified: that change wins
        log_event("auth.upgrade_skipped", account=account.address, reason="password changed meanwhile")
        return
    if needs_rehash:
        legacy = scheme_of(account.password_hash)
        kind = "legacy-hash-upgraded" if legacy else "hash-parameters-upgraded"
        detail = f"{legacy.name} to argon2id" if legacy else "argon2id parameters updated"
        await login.record(account.address, "done", detail, kind)


# SCRAM: the session looks the secrets up between steps, then applies the same rules.


async def scram_secrets(store: Store, username: str) -> tuple[str, ScramSecrets] | None:
    """(account key, stored SCRAM secrets) of an existing account that has them, else None."""
    try:
        key = parse_address_arg(username).key
    except AddressError:
        return None
    state = await store.credentials.get_credentials(key)
    if state is None or state.scram is None:
        return None
    return key, state.scram


async def finish_scram_login(
    store: Store,
    pool: HashPool,
    key: str,
    proof_ok: bool,
    attempt: LoginAttempt,
    *,
    rules: LoginRules | None = None,
    clock: Clock | None = None,
) -> AuthOutcome:
    """The outcome of a SCRAM exchange for the existing account ``key`` (``proof_ok``: proof matched)."""
    login = _Login(store, pool, attempt, rules or LoginRules(), clock or SystemClock())
    try:
        account = await store.get_account(key)
        state = await store.credentials.get_credentials(key)
    except Exception as exc:  # as in _look_up
        raise unavailable("credentials", exc) from None
    if account is None or state is None:
        return AuthOutcome(None, "unknown user", user=login.rules.label(key))
    if not proof_ok:
        return await login.fail(key, "wrong password")
    return await finish_verified_login(login, account, state, via="scram")


async def record_scram_failure(
    store: Store,
    pool: HashPool,
    username: str,
    attempt: LoginAttempt,
    *,
    rules: LoginRules | None = None,
    clock: Clock | None = None,
) -> AuthOutcome:
    """A SCRAM exchange that failed once the user's secrets (or decoys) were supplied. Known and
    unknown users cost the same: the same two look-ups and one login-history row (an unknown
    address is recorded under the keyed label of the name tried); only the log reason differs."""
    login = _Login(store, pool, attempt, rules or LoginRules(), clock or SystemClock())
    try:
        key = parse_address_arg(username).key
    except AddressError:  # never an account, so the name alone says so: nothing to hide
        return AuthOutcome(None, "user name is not an address", user=login.rules.label(username))
    try:
        account = await store.get_account(key)
        state = await store.credentials.get_credentials(key)
    except Exception as exc:  # as in _look_up
        raise unavailable("credentials", exc) from None
    known = account is not None and state is not None
    return await login.fail(key if known else login.rules.label(key), "wrong password" if known else "unknown user")


DECOY_ITERATIONS_TTL = 300.0  # seconds a looked-up most common iteration count is reused
_decoy_iterations: weakref.WeakKeyDictionary[object, tuple[float, int]] = weakref.WeakKeyDictionary()


async def decoy_scram_iterations(store: Store, configured: int, clock: Clock) -> int:
    """The iteration count of decoy SCRAM secrets: the one most stored secrets have (the configured
    one when none), so that ``i=`` in the server-first message does not tell unknown users from
    known ones. Looked up at most every DECOY_ITERATIONS_TTL seconds per store: an unknown user's
    exchange must not cost a scan of every account."""
    now = clock.monotonic()
    cached = _decoy_iterations.get(store)
    if cached is not None and now - cached[0] < DECOY_ITERATIONS_TTL:
        return cached[1]
    iterations = await store.credentials.most_common_scram_iterations() or configured
    _decoy_iterations[store] = (now, iterations)
    return iterations
