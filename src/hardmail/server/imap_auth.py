"""IMAP LOGIN and AUTHENTICATE (RFC 9051 6.2.2, 6.2.3; SASL-IR RFC 4959), mapped onto the
protocol-neutral login driver (:mod:`hardmail.server.login`), which runs the same checks as SMTP
AUTH: bans and IP ranges before any hashing, TOTP and app-password scopes, login history, the
session registry that ends sessions of disabled accounts.

Every failure gets ``NO [AUTHENTICATIONFAILED] Authentication failed.`` -- unknown user, wrong
password, a correct password refused by the account's rules, and also a source refused because it
is banned: the ban is not revealed, so an attacker cannot tell when it starts or ends, nor tune a
spray to stay under it, and a mail client shows its ordinary "wrong password" prompt instead of
retrying at once as it does after ``[UNAVAILABLE]`` (which would only prolong the ban). The
reason is in the log and the login history. ``[UNAVAILABLE]`` is kept for temporary failures
(the credentials cannot be checked now).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hardmail.proto.imap import commands as c
from hardmail.server.imap_common import Done, bad, no, ok
from hardmail.server.login import LoginDriver, LoginResult

if TYPE_CHECKING:
    from hardmail.server.imap_session import ImapSession

MECHANISMS = ("PLAIN", "SCRAM-SHA-256")
FAILED = no("Authentication failed.", "AUTHENTICATIONFAILED")  # RFC 5530 3
UNAVAILABLE = no("Temporary authentication failure, try again later", "UNAVAILABLE")
PRIVACY = no("Log in over TLS: use STARTTLS first, or the implicit-TLS port", "PRIVACYREQUIRED")
CANCELLED = bad("Authentication cancelled")


class ImapLogin:
    """One session's logins: the driver, and the account's place among its open IMAP sessions."""

    def __init__(self, session: ImapSession) -> None:
        self.session = session
        self.driver = LoginDriver(session.ctx, session.log, protocol="imap", facts=session.facts)
        self.counted: str | None = None  # the account counted in connections_per_account

    def release(self) -> None:
        if self.counted is not None:
            self.session._counts.close_account(self.counted)
            self.counted = None

    async def finish(self, result: LoginResult) -> Done:
        """The tagged answer for the end of an exchange."""
        session = self.session
        if result.kind == "success" and result.account is not None:
            if not session._counts.open_account(result.account, session.settings.connections_per_account):
                session.ctx.sessions.remove(session.id)  # registered by the driver: not a session after all
                session.log.event("imap.limit", level="warning", reason="connections per account",
                                  account=result.account)
                return no("Too many sessions open for this account", "LIMIT")
            self.counted = result.account
            session.account = result.account
            try:
                await session.ctx.mailbox_store().ensure_account(result.account)  # INBOX and special-use folders
            except Exception as exc:  # the session goes on: SELECT says what is missing
                session.log.event("imap.error", level="error", command="LOGIN", error=type(exc).__name__,
                                  detail=str(exc)[:300])
            session.conn.authenticated()
            session.conn.options = replace(session.conn.options, literal_plus=True)  # LITERAL+ once logged in
            return ok("Logged in", "CAPABILITY " + " ".join(_capabilities(session)))
        if result.kind == "tempfail":
            return UNAVAILABLE
        if result.kind == "encryption_required":
            return PRIVACY
        if result.kind == "aborted":
            return CANCELLED
        return FAILED  # failure and refused alike


def _capabilities(session: ImapSession) -> list[str]:
    from hardmail.server.imap_session import capabilities

    return capabilities(session)


async def login(session: ImapSession, command: c.Login) -> Done:
    if session.plaintext_refused:  # RFC 9051 6.2.3: LOGINDISABLED was advertised
        return PRIVACY
    result = await session.login.driver.password_login(command.user, command.password, "LOGIN")
    return await session.login.finish(result)


async def authenticate(session: ImapSession, command: c.Authenticate) -> Done:
    if command.mechanism not in MECHANISMS:
        return no("Unsupported authentication mechanism", "CANNOT")
    if session.plaintext_refused:
        return PRIVACY
    driver = session.login.driver
    result = await driver.start(command.mechanism, command.initial)
    while result.kind == "challenge":  # RFC 9051 6.2.2: "+ base64" lines until the end
        session.send(b"+ " + base64.b64encode(result.challenge) + b"\r\n")
        line = await _sasl_line(session)
        if line is None:
            driver.cancel()
            return CANCELLED
        if isinstance(line, Done):
            driver.cancel()
            return line
        result = await driver.respond(line)
    return await session.login.finish(result)


async def _sasl_line(session: ImapSession) -> bytes | Done | None:
    """The client's next SASL response decoded; None when it cancelled (``*``) or went away."""
    session.conn.expect_sasl_response()
    while True:
        event: Any = session.conn.next_event()
        if isinstance(event, c.NeedData):
            data = await session.read()
            if not data:
                return None
            session.conn.receive_data(data)
            continue
        if isinstance(event, c.SaslResponse):
            if event.cancelled:
                return None
            try:
                return base64.b64decode(event.line.strip(), validate=True)
            except (binascii.Error, ValueError):
                return bad("Invalid base64 in the authentication exchange")
        if isinstance(event, c.LineTooLong | c.BadCommand):
            return bad(event.text)
        return bad("Unexpected input in the authentication exchange")


HANDLERS: dict[type, Any] = {
    c.Login: login,
    c.Authenticate: authenticate,
}
