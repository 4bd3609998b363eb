"""The SMTP AUTH exchange (RFC 4954): drives a SASL mechanism and verifies the credentials."""

from __future__ import annotations

from hardmail.auth.authenticator import AuthOutcome, authenticate
from hardmail.auth.pool import PoolSaturated
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
from hardmail.server.context import ServerContext


class SmtpAuth:
    """One session's AUTH state: the running mechanism and, after success, the account."""

    def __init__(self, ctx: ServerContext, log: EventLogger) -> None:
        self.ctx = ctx
        self.log = log
        self.mechanism: sasl.Mechanism | None = None
        self.account: str | None = None

    async def start(self, event: Auth) -> Reply:
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
        step = self.mechanism.step(response)
        if isinstance(step, sasl.Challenge):
            return Reply(334, None, sasl.encode_challenge(step.data))
        name = self.mechanism.name
        self.mechanism = None
        if isinstance(step, sasl.Failure):
            self.log.event("smtp.auth", level="warning", result="failure", mechanism=name, reason=step.reason)
            return AUTH_FAILED
        return await self._verify(step, name)

    async def _verify(self, credentials: sasl.Credentials, mechanism: str) -> Reply:
        try:
            outcome: AuthOutcome = await authenticate(
                self.ctx.store, self.ctx.hash_pool, credentials.authcid, credentials.password
            )
        except PoolSaturated:
            self.log.event("smtp.auth", level="warning", result="tempfail", mechanism=mechanism,
                           user=credentials.authcid, reason="password hashing pool saturated")
            return AUTH_TEMP_FAILURE
        if outcome.account is None:
            self.log.event("smtp.auth", level="warning", result="failure", mechanism=mechanism,
                           user=credentials.authcid, reason=outcome.reason, code="5.7.8")
            return AUTH_FAILED
        self.account = outcome.account
        self.log.event("smtp.auth", result="success", mechanism=mechanism, user=outcome.account)
        return AUTH_OK

    def _abort(self, reply: Reply, reason: str) -> Reply:
        self.mechanism = None
        self.log.event("smtp.auth", level="warning", result="aborted", reason=reason)
        return reply if reply.code >= 400 else AUTH_CANCELLED
