"""The SMTP AUTH exchange (RFC 4954): base64 on the wire, and SMTP's replies to each login result.

Everything else (SASL, decoy SCRAM secrets, the gate, the hooks, the login history, the session
registry) is the protocol-neutral :class:`hardmail.server.login.LoginDriver`. Every failure gets
the same 535 5.7.8 reply, a correct password refused by the account rules included (RFC 4954 6:
a different text would confirm the password); a banned source gets the ban's 421 4.7.0; when the
credentials cannot be checked the reply is 454 4.7.0 (RFC 4954 6).
"""

from __future__ import annotations

from collections.abc import Callable

from hardmail.core.ids import new_id
from hardmail.core.replies import (
    AUTH_BAD_BASE64,
    AUTH_CANCELLED,
    AUTH_ENCRYPTION_REQUIRED,
    AUTH_FAILED,
    AUTH_OK,
    AUTH_TEMP_FAILURE,
    Reply,
)
from hardmail.ops.log import EventLogger
from hardmail.proto import sasl
from hardmail.proto.smtp.events import Auth, AuthResponse
from hardmail.server.access_hook import BANNED
from hardmail.server.context import ServerContext
from hardmail.server.hooks import SessionFacts
from hardmail.server.login import LoginDriver, LoginResult
from hardmail.server.sessions import Endable

_REPLIES: dict[str, Reply] = {
    "success": AUTH_OK,
    "failure": AUTH_FAILED,  # RFC 4954 6: one reply for every failure, correct-but-refused included
    "tempfail": AUTH_TEMP_FAILURE,  # RFC 4954 6
    "refused": BANNED,
    "encryption_required": AUTH_ENCRYPTION_REQUIRED,
    "aborted": AUTH_CANCELLED,
}


def smtp_reply(result: LoginResult) -> Reply:
    """The SMTP reply to a login result: a refusing hook's own reply, else the kind's."""
    if result.reply is not None:
        return result.reply
    if result.kind == "challenge":
        return Reply(334, None, sasl.encode_challenge(result.challenge))
    return _REPLIES[result.kind]


def _fixed_facts(peer_ip: str, tls_version: str) -> Callable[[], SessionFacts]:
    facts = SessionFacts(session_id=new_id(), listener="submission", peer_ip=peer_ip, peer_port=0, helo=None,
                         tls={"version": tls_version} if tls_version else None, account=None)
    return lambda: facts


class SmtpAuth:
    """One SMTP session's AUTH state: the login driver, and after success the account.

    A session passes its ``facts`` method and itself as ``target`` (what an account change ends);
    without them (tests of the exchange alone) the facts are made of ``peer_ip`` and
    ``tls_version`` and the login is not registered."""

    def __init__(
        self, ctx: ServerContext, log: EventLogger, *, peer_ip: str | None = None, tls_version: str = "",
        facts: Callable[[], SessionFacts] | None = None, target: Endable | None = None,
    ) -> None:
        self.driver = LoginDriver(ctx, log, protocol="smtp", facts=facts or _fixed_facts(peer_ip or "", tls_version),
                                  target=target)

    @property
    def ctx(self) -> ServerContext:
        return self.driver.ctx

    @property
    def account(self) -> str | None:
        return self.driver.account

    @property
    def via(self) -> str:
        return self.driver.via

    @property
    def app_password_id(self) -> int | None:
        return self.driver.app_password_id

    @property
    def mechanism(self) -> sasl.Mechanism | None:
        return self.driver.mechanism

    @property
    def last_outcome(self) -> tuple[str, bool, str] | None:
        """(user name, success, reason) of the exchange that ended last."""
        return self.driver.last_outcome

    async def start(self, event: Auth) -> Reply:
        initial = None
        if event.initial_response is not None:
            try:
                initial = sasl.decode_response(event.initial_response)
            except sasl.SaslDecodeError:
                self.driver.cancel("initial response is not base64")
                return AUTH_BAD_BASE64
        return smtp_reply(await self.driver.start(event.mechanism, initial))

    async def respond(self, event: AuthResponse) -> Reply:
        if event.cancelled or not self.driver.in_progress:
            self.driver.cancel("cancelled by client")
            return event.reply if event.cancelled and event.reply.code >= 400 else AUTH_CANCELLED
        try:
            data = sasl.decode_response(event.data)
        except sasl.SaslDecodeError:
            self.driver.cancel("response is not base64")
            return AUTH_BAD_BASE64
        return smtp_reply(await self.driver.respond(data))
