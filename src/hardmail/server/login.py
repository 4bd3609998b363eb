"""The login engine of every protocol: SMTP AUTH, IMAP LOGIN and AUTHENTICATE, POP3 USER/PASS and
AUTH all log in through one :class:`LoginDriver` per connection, so that every defence holds the
same way on each of them.

A protocol session gives the driver what the client sent, decoded (a SASL mechanism's initial
response and later responses, or a user name and password), and maps each :class:`LoginResult`
to its own wire reply; the driver does everything else:

- the session hooks' ``before_auth`` (bans, IP ranges that want TLS for logins, the account-change
  poll), before any password work, at every step of an exchange (a ban may land while the client
  sits at a prompt), and ``after_auth`` (failure counting, bans, the tarpit, known sources);
- SASL PLAIN, LOGIN and SCRAM-SHA-256 (:mod:`hardmail.proto.sasl`). SCRAM asks for the user's
  stored secrets between steps: an unknown user (or one without SCRAM secrets yet) gets decoy
  secrets derived from the server key, with the iteration count most stored secrets have, so the
  exchange looks the same and simply fails at the proof. A failure after that point costs the same
  for known and unknown users (the same look-ups and one login-history row, see
  ``record_scram_failure``). After a verified proof the same account rules as for a password apply
  before the server's final message is sent;
- :func:`hardmail.auth.authenticator.authenticate` for passwords (the login history row carries
  the protocol, the mechanism, the TLS version and the result; app-password scopes and the TOTP
  rule of :mod:`hardmail.policy.login` are judged per protocol);
- the client's login gate (its access rules, see :mod:`hardmail.auth.gate`), asked once the user
  name is known and before any hashing; a refusal there is answered like a banned source;
- on success, the session in ``ctx.sessions`` (:mod:`hardmail.server.sessions`), so that disabling,
  freezing or removing the account, changing its password or revoking the app password ends it;
- one ``<protocol>.auth`` log event per ending (``smtp.auth``, ``imap.auth``, ``pop3.auth``). A user
  name that is no account is logged only as its keyed label (:mod:`hardmail.auth.user_label`); no
  password or SASL blob is ever logged.

Every failure is the same ``failure`` result: unknown user, wrong password, an app password out of
its scope, and a correct password refused by the account rules (two-factor authentication on,
must change, expired) alike, with the same work done: a different answer would confirm the
password. The reason is in the log and the login history only. When the credentials cannot be
checked (hashing pool full, store unreadable) the result is ``tempfail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hardmail.auth.audit import AuthUnavailable
from hardmail.auth.authenticator import (
    AuthOutcome,
    LoginAttempt,
    LoginRules,
    authenticate,
    decoy_scram_iterations,
    finish_scram_login,
    record_scram_failure,
    scram_secrets,
)
from hardmail.auth.gate import LoginGate, OpenGate
from hardmail.auth.pool import CLIENT_GONE, ClientGone, PoolSaturated
from hardmail.auth.scram import ScramSecrets, decoy_secrets
from hardmail.auth.server_key import ServerKeyError, load_or_create_server_key
from hardmail.core.replies import AUTH_ENCRYPTION_REQUIRED, Reply
from hardmail.ops.log import EventLogger
from hardmail.proto import sasl
from hardmail.server.access_hook import BANNED, AccessHook, access_hook_of
from hardmail.server.context import ServerContext
from hardmail.server.hooks import SessionFacts
from hardmail.server.sessions import AuthenticatedSession, Endable

# The SASL mechanisms the driver runs. PLAIN and LOGIN carry the password: a protocol offers them
# (and password logins) only inside TLS unless its admin allowed otherwise.
MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")

LoginKind = Literal["challenge", "success", "failure", "tempfail", "refused", "encryption_required", "aborted"]


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What one step of a login came to, for the protocol to answer.

    ``challenge``: send ``challenge`` (raw bytes; the protocol base64-encodes) and wait for the
    client's response; ``success``: logged in as ``account``; ``failure``: every kind of wrong
    credentials, one answer; ``tempfail``: the credentials cannot be checked now (or a check asked
    the client to come back later); ``refused``: the source is banned or denied (also when this
    very failure made the ban); ``encryption_required``: the client's IP range wants TLS for
    logins; ``aborted``: the exchange ended unverified (cancelled, malformed, none in progress).
    ``reply``: the refusing hook's own SMTP reply, when a hook decided (SMTP answers it as is).
    """

    kind: LoginKind
    challenge: bytes = b""
    account: str | None = None
    reply: Reply | None = None


FAILURE = LoginResult("failure")
TEMPFAIL = LoginResult("tempfail")
REFUSED = LoginResult("refused")
ABORTED = LoginResult("aborted")


@functools.lru_cache(maxsize=4)
def _decoy_key(data_dir: Path) -> bytes:
    """A stable key for decoy SCRAM salts (from the server key, so they survive restarts)."""
    try:
        return load_or_create_server_key(data_dir)
    except (ServerKeyError, OSError):
        return secrets.token_bytes(32)


def hook_result(reply: Reply) -> LoginResult:
    """A hook's refusal as a login result: a ban → ``refused``, the range's TLS rule →
    ``encryption_required``, any other 4xx → ``tempfail``, any other 5xx → ``refused``."""
    if reply == BANNED:
        return LoginResult("refused", reply=reply)
    if reply == AUTH_ENCRYPTION_REQUIRED:
        return LoginResult("encryption_required", reply=reply)
    return LoginResult("tempfail" if reply.code < 500 else "refused", reply=reply)


def _owner_of(facts: Callable[[], SessionFacts]) -> Endable | None:
    """The session of a bound ``facts`` method, when it can be ended (``end_session``)."""
    owner = getattr(facts, "__self__", None)
    return owner if callable(getattr(owner, "end_session", None)) else None


class LoginDriver:
    """One connection's logins: the running SASL exchange and, after success, the account.

    ``facts`` gives the session's current facts (peer, TLS, session id) for the hooks and the login
    history. ``target`` is what ``ctx.sessions`` ends when the account changes (an object with
    ``end_session(reply)``, see :class:`hardmail.server.sessions.Endable`); by default the owner of a
    bound ``facts`` method. Without one the login is not registered (tests of the exchange alone).
    ``client_gone``: a future done once the client's connection is lost (``Channel.lost``); a
    password check still waiting for the hashing pool is then dropped (SMTP sets this for its whole
    session through :data:`hardmail.auth.pool.CLIENT_GONE` instead).
    """

    def __init__(self, ctx: ServerContext, log: EventLogger, *, protocol: str,
                 facts: Callable[[], SessionFacts], target: Endable | None = None,
                 client_gone: asyncio.Future[None] | None = None) -> None:
        self.ctx = ctx
        self._client_gone = client_gone
        self.log = log
        self.protocol = protocol
        self._facts = facts
        self._target = target if target is not None else _owner_of(facts)
        self._event = f"{protocol}.auth"
        self.mechanism: sasl.Mechanism | None = None
        self.account: str | None = None
        self.via = ""  # after success: "password", "scram" or "app-password"
        self.app_password_id: int | None = None  # the app password used, for its revocation
        # (user name, success, reason) of the exchange that ended last, for the hooks.
        self.last_outcome: tuple[str, bool, str] | None = None
        self._scram_key: str | None = None  # the SCRAM user's account, when it exists
        self._scram_user = ""  # the user name a SCRAM client gave
        self._verified: str | None = None  # SCRAM: accepted account waiting for the final answer

    # ----- what the protocols call ------------------------------------------------------------
    async def start(self, mechanism: str, initial: bytes | None) -> LoginResult:
        """Begin a SASL exchange (``initial``: the decoded initial response, None when absent)."""
        self._new_exchange()
        refusal = await self._before(mechanism)
        if refusal is not None:
            return refusal
        self.mechanism = sasl.new_mechanism(mechanism)
        if self.mechanism is None:  # the protocol offers only MECHANISMS; kept for safety
            return await self._finish(FAILURE)
        with self._watching_client():
            return await self._finish(await self._step(initial))

    async def respond(self, data: bytes) -> LoginResult:
        """The client's (decoded) response to the last challenge."""
        if self.mechanism is None:
            return self._abort("no exchange in progress")
        self.last_outcome = None
        # A ban may have landed while the client sat at a prompt: ask again before any verification.
        refusal = await self._before(self.mechanism.name)
        if refusal is not None:
            self.mechanism = None  # the exchange ends unverified
            self._login_failed()
            return refusal
        with self._watching_client():
            return await self._finish(await self._step(data))

    def cancel(self, reason: str = "cancelled by client") -> None:
        """End the exchange unverified: the client cancelled it, or sent what cannot be decoded."""
        self._abort(reason)

    async def password_login(self, username: str, password: str, mechanism: str) -> LoginResult:
        """A plain user name and password: IMAP ``LOGIN`` (mechanism "LOGIN"), POP3 ``USER``/``PASS``
        (mechanism "USER"); the same checks and the same answers as SASL PLAIN."""
        self._new_exchange()
        refusal = await self._before(mechanism)
        if refusal is not None:
            return refusal
        with self._watching_client():
            return await self._finish(await self._verify(username, password, mechanism))

    @property
    def in_progress(self) -> bool:
        """Whether a SASL exchange waits for the client's response."""
        return self.mechanism is not None

    @contextlib.contextmanager
    def _watching_client(self) -> Iterator[None]:
        """Password checks made inside drop out of the hashing pool's queue if the client goes."""
        if self._client_gone is None:
            yield
            return
        token = CLIENT_GONE.set(self._client_gone)
        try:
            yield
        finally:
            CLIENT_GONE.reset(token)

    # ----- hooks and the session registry ------------------------------------------------------
    def _new_exchange(self) -> None:
        self._scram_key, self._scram_user, self._verified = None, "", None
        self.mechanism = None
        self.last_outcome = None
        self._login_failed()  # a new exchange: no mark left by an earlier one

    def _login_failed(self) -> None:
        if self._target is not None:
            self.ctx.sessions.login_failed(self._facts().session_id)

    async def _first_refusal(self, method: str, *args: Any) -> Reply | None:
        """Ask every hook in order; the first reply that is not None wins."""
        for hook in self.ctx.hooks:
            reply: Reply | None = await getattr(hook, method)(self._facts(), *args)
            if reply is not None:
                return reply
        return None

    async def _before(self, mechanism: str) -> LoginResult | None:
        reply = await self._first_refusal("before_auth", mechanism)
        if reply is None:
            return None
        self._login_failed()
        return hook_result(reply)

    async def _finish(self, result: LoginResult) -> LoginResult:
        """After a step: the hooks' ``after_auth`` once an exchange ended with a verdict, and the
        session's registration on success."""
        outcome = self.last_outcome
        if outcome is None:
            if self.mechanism is None:  # the exchange ended unverified (gate, temporary failure)
                self._login_failed()
            return result
        username, success, reason = outcome
        reply = await self._first_refusal("after_auth", username, success, reason)
        if reply is not None:  # e.g. this failure made a ban; the hooks after it were not asked
            if success:  # a check refused a verified login: it does not stand
                self.account, self.via, self.app_password_id = None, "", None
            self._login_failed()
            return hook_result(reply)
        if success and result.kind == "success" and self.account is not None and self._target is not None:
            self.ctx.sessions.add(AuthenticatedSession(self._facts().session_id, self.account, self.via,
                                                       self.app_password_id, self._target))
        return result

    # ----- the exchange -----------------------------------------------------------------------
    async def _step(self, response: bytes | None) -> LoginResult:
        assert self.mechanism is not None
        return await self._handle(self.mechanism.step(response))

    async def _handle(self, step: sasl.Step) -> LoginResult:
        assert self.mechanism is not None
        if isinstance(step, sasl.Challenge):
            return LoginResult("challenge", challenge=step.data)
        if isinstance(step, sasl.NeedSecrets):
            return await self._supply_secrets(step.username)
        if isinstance(step, sasl.Verified):
            return await self._scram_verified(step)
        name = self.mechanism.name
        self.mechanism = None
        if isinstance(step, sasl.Completed):
            return self._succeed(self._verified or step.authcid, name, "scram")
        if isinstance(step, sasl.Failure):
            return await self._mechanism_failed(step, name)
        return await self._verify(step.authcid, step.password, name)

    def _attempt(self, mechanism: str) -> LoginAttempt:
        facts = self._facts()
        tls_version = facts.tls.get("version", "") if facts.tls else ""
        return LoginAttempt(protocol=self.protocol, client_ip=facts.peer_ip, mechanism=mechanism,
                            tls_version=tls_version)

    def _rules(self) -> LoginRules:
        return LoginRules.from_config(self.ctx.config)

    def _gate(self) -> LoginGate:
        peer_ip = self._facts().peer_ip
        hook = access_hook_of(self.ctx)
        if hook is not None:
            return hook.gate_for(peer_ip)
        keys = AccessHook.keys_of(peer_ip)
        return OpenGate(keys[0] if keys is not None else "")  # still one fair share per source

    def _gate_refused(self, outcome: AuthOutcome, mechanism: str) -> LoginResult:
        """A banned source trying an account it never logged in to: refused before any hashing."""
        self.mechanism = None
        self.log.event(self._event, level="warning", result="refused", mechanism=mechanism, user=outcome.user,
                       reason=outcome.reason)
        return LoginResult("refused", reply=BANNED)

    def _code(self, enhanced: str) -> dict[str, str]:
        """The SMTP enhanced status code of the reply, in SMTP's log events (RFC 4954 6)."""
        return {"code": enhanced} if self.protocol == "smtp" else {}

    def _temp_failure(self, mechanism: str, reason: str) -> LoginResult:
        self.mechanism = None
        self.log.event(self._event, level="warning", result="tempfail", mechanism=mechanism, reason=reason,
                       **self._code("4.7.0"))
        return TEMPFAIL

    # SCRAM-SHA-256

    async def _supply_secrets(self, username: str) -> LoginResult:
        assert isinstance(self.mechanism, sasl.ScramSha256Mechanism)
        self._scram_user = username
        try:
            stored = await self._secrets_for(username)
        except Exception:  # AuthUnavailable, or any store error: the login cannot go on
            return self._temp_failure(self.mechanism.name, "credentials cannot be read")
        if isinstance(stored, LoginResult):
            return stored
        return await self._handle(self.mechanism.supply(stored))

    async def _secrets_for(self, username: str) -> ScramSecrets | LoginResult:
        """The user's SCRAM secrets, decoys for an unknown user, or the gate's refusal."""
        assert self.mechanism is not None
        found = await scram_secrets(self.ctx.login_store, username)
        user = found[0] if found is not None else self._rules().label(username)
        admitted = await self._gate().admit(user)
        if not admitted.allowed:
            return self._gate_refused(AuthOutcome(None, admitted.reason, user=user), self.mechanism.name)
        if found is not None:
            self._scram_key, stored = found
            return stored
        iterations = await decoy_scram_iterations(
            self.ctx.login_store, self.ctx.config.auth.scram.iterations, self.ctx.clock)
        return decoy_secrets(username.lower(), _decoy_key(self.ctx.config.data_dir), iterations)

    async def _scram_verified(self, step: sasl.Verified) -> LoginResult:
        name = self.mechanism.name if self.mechanism else "SCRAM-SHA-256"
        if self._scram_key is None:  # decoy secrets cannot verify; kept for safety
            self.mechanism = None
            return self._refuse(AuthOutcome(None, "unknown user", user=self._rules().label(step.authcid)), name)
        try:
            outcome = await finish_scram_login(self.ctx.login_store, self.ctx.hash_pool, self._scram_key, True,
                                               self._attempt(name), rules=self._rules(), clock=self.ctx.clock)
        except AuthUnavailable:
            return self._temp_failure(name, "credentials cannot be read")
        if outcome.account is None:
            self.mechanism = None
            return self._refuse(outcome, name)
        self._verified = outcome.account
        return LoginResult("challenge", challenge=step.server_final)

    async def _mechanism_failed(self, step: sasl.Failure, name: str) -> LoginResult:
        if self._scram_user:  # SCRAM after the secrets (real or decoy) were supplied: same work for both
            try:
                outcome = await record_scram_failure(self.ctx.login_store, self.ctx.hash_pool, self._scram_user,
                                                     self._attempt(name), rules=self._rules(), clock=self.ctx.clock)
            except AuthUnavailable:
                return self._temp_failure(name, "credentials cannot be read")
            return self._refuse(outcome, name)
        self.log.event(self._event, level="warning", result="failure", mechanism=name, reason=step.reason)
        self.last_outcome = (self._scram_user, False, step.reason)
        return FAILURE

    # Passwords (PLAIN, LOGIN, IMAP LOGIN, POP3 USER/PASS)

    async def _verify(self, username: str, password: str, mechanism: str) -> LoginResult:
        try:
            outcome: AuthOutcome = await authenticate(
                self.ctx.login_store, self.ctx.hash_pool, username, password,
                self._attempt(mechanism), rules=self._rules(), clock=self.ctx.clock, gate=self._gate(),
            )
        except ClientGone:
            return self._temp_failure(mechanism, "client went away while its password check waited")
        except PoolSaturated:
            return self._temp_failure(mechanism, "password hashing pool saturated")
        except AuthUnavailable:
            return self._temp_failure(mechanism, "credentials cannot be read")
        if outcome.gate_refused:
            return self._gate_refused(outcome, mechanism)
        if outcome.account is None:
            return self._refuse(outcome, mechanism)
        return self._succeed(outcome.account, mechanism, outcome.via, outcome.app_password_id)

    def _succeed(self, account: str, mechanism: str, via: str = "", app_password_id: int | None = None) -> LoginResult:
        self.account = account
        self.via, self.app_password_id = via, app_password_id
        self.last_outcome = (account, True, "ok")
        self.log.event(self._event, result="success", mechanism=mechanism, user=account, via=via or None)
        return LoginResult("success", account=account)

    def _refuse(self, outcome: AuthOutcome, mechanism: str) -> LoginResult:
        self.log.event(self._event, level="warning", result="failure", mechanism=mechanism,
                       user=outcome.user, reason=outcome.reason, **self._code("5.7.8"))
        self.last_outcome = (outcome.user, False, outcome.reason)
        return FAILURE  # one answer for every failure, correct-but-refused included

    def _abort(self, reason: str) -> LoginResult:
        self.mechanism = None
        self._login_failed()
        self.log.event(self._event, level="warning", result="aborted", reason=reason)
        return ABORTED
