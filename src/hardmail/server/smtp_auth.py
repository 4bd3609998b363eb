"""The SMTP AUTH exchange (RFC 4954): drives a SASL mechanism and verifies the credentials.

PLAIN and LOGIN end with a user name and password for :func:`authenticate`. SCRAM-SHA-256 asks
for the user's stored secrets between steps (:class:`sasl.NeedSecrets`): they are looked up here
and fed back; an unknown user (or one without SCRAM secrets yet) gets decoy secrets derived from
the server key, with the iteration count most stored secrets have, so the exchange looks the same
and simply fails at the proof. A failure after that point costs the same for known and unknown
users (the same look-ups and one login-history row, see ``record_scram_failure``). After a verified
proof the same account rules as for a password apply before the server's final message is sent.
Every failure gets the same 535 5.7.8 reply, a correct password refused by those rules (two-factor
authentication on, must change, expired) included: a different text would confirm the password.
The reason is in the log and the login history only. The client's login gate (its access rules,
see :mod:`hardmail.auth.gate`) is asked once the user name is known, before any hashing; a
refusal there is answered like a banned source. When the credentials cannot be checked (hashing
pool full, store unreadable) the reply is 454 4.7.0 (RFC 4954 6). A user name that is no account
is logged only as its keyed label (:mod:`hardmail.auth.user_label`).
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

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
from hardmail.auth.pool import ClientGone, PoolSaturated
from hardmail.auth.scram import ScramSecrets, decoy_secrets
from hardmail.auth.server_key import ServerKeyError, load_or_create_server_key
from hardmail.core.replies import (
    AUTH_BAD_BASE64,
    AUTH_CANCELLED,
    AUTH_FAILED,
    AUTH_OK,
    AUTH_TEMP_FAILURE,
    Reply,
)
from hardmail.ops.log import EventLogger
from hardmail.proto import sasl
from hardmail.proto.smtp.events import Auth, AuthResponse
from hardmail.server.access_hook import BANNED, AccessHook, access_hook_of
from hardmail.server.context import ServerContext


@functools.lru_cache(maxsize=4)
def _decoy_key(data_dir: Path) -> bytes:
    """A stable key for decoy SCRAM salts (from the server key, so they survive restarts)."""
    try:
        return load_or_create_server_key(data_dir)
    except (ServerKeyError, OSError):
        return secrets.token_bytes(32)


class SmtpAuth:
    """One session's AUTH state: the running mechanism and, after success, the account."""

    def __init__(
        self, ctx: ServerContext, log: EventLogger, *, peer_ip: str | None = None, tls_version: str = ""
    ) -> None:
        self.ctx = ctx
        self.log = log
        self.mechanism: sasl.Mechanism | None = None
        self.account: str | None = None
        self.via = ""  # after success: "password", "scram" or "app-password"
        self.app_password_id: int | None = None  # the app password used, for its revocation
        self.peer_ip = peer_ip or ""
        self.tls_version = tls_version
        self._scram_key: str | None = None  # the SCRAM user's account, when it exists
        self._scram_user = ""  # the user name a SCRAM client gave
        # (user name, success, reason) of the exchange that just ended, for the session's hooks.
        self.last_outcome: tuple[str, bool, str] | None = None
        self._verified: str | None = None  # SCRAM: accepted account waiting for the final answer

    async def start(self, event: Auth) -> Reply:
        self._scram_key, self._scram_user, self._verified = None, "", None  # a new exchange
        self.mechanism = sasl.new_mechanism(event.mechanism)
        if self.mechanism is None:  # the core only lets offered mechanisms through
            return AUTH_FAILED
        initial = None
        if event.initial_response is not None:
            try:
                initial = sasl.decode_response(event.initial_response)
            except sasl.SaslDecodeError:
                return self._abort(AUTH_BAD_BASE64, "initial response is not base64")
        return await self._step(initial)

    async def respond(self, event: AuthResponse) -> Reply:
        if event.cancelled or self.mechanism is None:
            return self._abort(event.reply if event.cancelled else AUTH_CANCELLED, "cancelled by client")
        try:
            data = sasl.decode_response(event.data)
        except sasl.SaslDecodeError:
            return self._abort(AUTH_BAD_BASE64, "response is not base64")
        return await self._step(data)

    async def _step(self, response: bytes | None) -> Reply:
        assert self.mechanism is not None
        return await self._handle(self.mechanism.step(response))

    async def _handle(self, step: sasl.Step) -> Reply:
        assert self.mechanism is not None
        if isinstance(step, sasl.Challenge):
            return Reply(334, None, sasl.encode_challenge(step.data))
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
        return await self._verify(step, name)

    def _attempt(self, mechanism: str) -> LoginAttempt:
        return LoginAttempt(protocol="smtp", client_ip=self.peer_ip, mechanism=mechanism,
                            tls_version=self.tls_version)

    def _rules(self) -> LoginRules:
        return LoginRules.from_config(self.ctx.config)

    def _gate(self) -> LoginGate:
        hook = access_hook_of(self.ctx)
        if hook is not None:
            return hook.gate_for(self.peer_ip)
        keys = AccessHook.keys_of(self.peer_ip)
        return OpenGate(keys[0] if keys is not None else "")  # still one fair share per source

    def _gate_refused(self, outcome: AuthOutcome, mechanism: str) -> Reply:
        """A banned source trying an account it never logged in to: refused before any hashing."""
        self.mechanism = None
        self.log.event("smtp.auth", level="warning", result="refused", mechanism=mechanism, user=outcome.user,
                       reason=outcome.reason)
        return BANNED

    def _temp_failure(self, mechanism: str, reason: str) -> Reply:
        self.mechanism = None
        self.log.event("smtp.auth", level="warning", result="tempfail", mechanism=mechanism, reason=reason,
                       code="4.7.0")
        return AUTH_TEMP_FAILURE  # RFC 4954 6

    # SCRAM-SHA-256

    async def _supply_secrets(self, username: str) -> Reply:
        assert isinstance(self.mechanism, sasl.ScramSha256Mechanism)
        self._scram_user = username
        try:
            stored = await self._secrets_for(username)
        except Exception:  # AuthUnavailable, or any store error: AUTH cannot go on
            return self._temp_failure(self.mechanism.name, "credentials cannot be read")
        if isinstance(stored, Reply):
            return stored
        return await self._handle(self.mechanism.supply(stored))

    async def _secrets_for(self, username: str) -> ScramSecrets | Reply:
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

    async def _scram_verified(self, step: sasl.Verified) -> Reply:
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
        return Reply(334, None, sasl.encode_challenge(step.server_final))

    async def _mechanism_failed(self, step: sasl.Failure, name: str) -> Reply:
        if self._scram_user:  # SCRAM after the secrets (real or decoy) were supplied: same work for both
            try:
                outcome = await record_scram_failure(self.ctx.login_store, self.ctx.hash_pool, self._scram_user,
                                                     self._attempt(name), rules=self._rules(), clock=self.ctx.clock)
            except AuthUnavailable:
                return self._temp_failure(name, "credentials cannot be read")
            return self._refuse(outcome, name)
        self.log.event("smtp.auth", level="warning", result="failure", mechanism=name, reason=step.reason)
        self.last_outcome = (self._scram_user, False, step.reason)
        return AUTH_FAILED

    # PLAIN and LOGIN

    async def _verify(self, credentials: sasl.Credentials, mechanism: str) -> Reply:
        try:
            outcome: AuthOutcome = await authenticate(
                self.ctx.login_store, self.ctx.hash_pool, credentials.authcid, credentials.password,
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

    def _succeed(self, account: str, mechanism: str, via: str = "", app_password_id: int | None = None) -> Reply:
        self.account = account
        self.via, self.app_password_id = via, app_password_id
        self.last_outcome = (account, True, "ok")
        self.log.event("smtp.auth", result="success", mechanism=mechanism, user=account, via=via or None)
        return AUTH_OK

    def _refuse(self, outcome: AuthOutcome, mechanism: str) -> Reply:
        self.log.event("smtp.auth", level="warning", result="failure", mechanism=mechanism,
                       user=outcome.user, reason=outcome.reason, code="5.7.8")
        self.last_outcome = (outcome.user, False, outcome.reason)
        return AUTH_FAILED  # RFC 4954 6: one reply for every failure, correct-but-refused included

    def _abort(self, reply: Reply, reason: str) -> Reply:
        self.mechanism = None
        self.log.event("smtp.auth", level="warning", result="aborted", reason=reason)
        return reply if reply.code >= 400 else AUTH_CANCELLED
