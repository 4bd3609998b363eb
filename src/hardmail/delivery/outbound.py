"""Delivering queued messages for one destination domain over SMTP, with its TLS policy applied.

:class:`OutboundDeliverer` picks the hosts (MX order, or the configured route), decides per host how
TLS must be used (DANE, MTA-STS enforce, the route's mode, else opportunistic STARTTLS), opens one
connection to the first host that works (RFC 5321 5.1: next address, then next MX, on connection
failures) and sends several messages over it. Each message's per-recipient outcome is handed to a
callback as soon as the remote server has answered, before the next message is sent. Each attempt
is logged as one JSON line with the MX, IP, TLS version, reply code and text.

Route credentials are only ever sent over verified TLS. An unexpected error while sending one
message defers that message only (the connection is dropped). The sender's DSN request is passed
on to a next hop that offers DSN (RFC 3461 4).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hardmail.delivery.dane import DANE_TA, chain_access_available, dane_authenticates
from hardmail.delivery.dsn import RecipientDsn, xtext
from hardmail.delivery.routing import Destination, MxHost
from hardmail.delivery.smtp_client import (
    ConnectionFailed,
    Reply,
    SmtpClient,
    Timeouts,
    TransactionReplies,
    mail_from_line,
)
from hardmail.delivery.tls_policy import (
    OPPORTUNISTIC,
    MtaSts,
    TlsPlan,
    tlsa_lookup,
    unverified_context,
    verified_context,
)
from hardmail.msgauth.dns import Resolver
from hardmail.ops.log import log_event
from hardmail.store.ports_queue import RecipientOutcome, RecipientState, Route

Decrypt = Callable[[str], str]
_HEADER_END = b"\r\n\r\n"


class DeliveryDeferred(Exception):
    """No host could take the mail now (every connection failed or a TLS policy could not be met)."""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes = field(default=b"", repr=False)  # loaded just before sending (see ``Prepare``)
    ret: str = ""  # RFC 3461 4.3
    envid: str = ""  # RFC 3461 4.4
    recipient_dsn: Mapping[str, RecipientDsn] = field(default_factory=dict)  # RFC 3461 4.1, 4.2

    @property
    def needs_8bitmime(self) -> bool:
        return not self.data.isascii()

    @property
    def needs_smtputf8(self) -> bool:
        """Non-ASCII addresses or raw UTF-8 in the header block (RFC 6531, RFC 6532)."""
        head = self.data.split(_HEADER_END, 1)[0]
        return not (self.sender.isascii() and all(r.isascii() for r in self.recipients) and head.isascii())


@dataclass(frozen=True, slots=True)
class AttemptResult:
    message: OutgoingMessage
    outcomes: tuple[RecipientOutcome, ...]
    mx: str = ""
    ip: str = ""
    tls: str | None = None
    summary: str = ""  # the reply or error that decided the attempt

    @property
    def deferred(self) -> bool:
        return any(o.state == "pending" for o in self.outcomes)


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    helo_name: str
    timeouts: Timeouts = field(default_factory=Timeouts)
    ca_file: Path | None = None
    mta_sts: bool = True
    dane: bool = True


@dataclass
class _Open:
    client: SmtpClient
    host: MxHost
    plan: TlsPlan


OnResult = Callable[[AttemptResult], Awaitable[None]]
# Called right before a message is sent: the message with its data and its still-pending recipients,
# or None to skip it (its claim was lost, or nothing is pending any more).
Prepare = Callable[[OutgoingMessage], Awaitable["OutgoingMessage | None"]]


async def _unchanged(message: OutgoingMessage) -> OutgoingMessage | None:
    return message


def all_outcomes(message: OutgoingMessage, state: RecipientState, text: str, code: int | None = None,
                 mx: str = "") -> tuple[RecipientOutcome, ...]:
    return tuple(RecipientOutcome(r, state, code, text, mx) for r in message.recipients)


def _state_for(reply: Reply) -> RecipientState:
    if 200 <= reply.code < 300:
        return "delivered"
    return "failed" if reply.is_permanent else "pending"


def outcomes_from(message: OutgoingMessage, replies: TransactionReplies, mx: str) -> tuple[RecipientOutcome, ...]:
    """Per recipient: the RCPT reply when it refused, else the reply to the message data."""
    if not replies.mail.is_positive:
        state: RecipientState = "failed" if replies.mail.is_permanent else "pending"
        return all_outcomes(message, state, replies.mail.text, replies.mail.code, mx)
    outcomes = []
    for recipient in message.recipients:
        reply = replies.rcpt.get(recipient)
        if reply is None or reply.is_positive:
            reply = replies.data or Reply(451, ("4.4.2 no reply to the message data",))
        outcomes.append(RecipientOutcome(recipient, _state_for(reply), reply.code, reply.text, mx))
    return tuple(outcomes)


def route_plan(route: Route) -> TlsPlan:
    """The route's TLS mode; with credentials, TLS with a verified certificate and name is required."""
    if route.username and route.tls == "none":
        raise DeliveryDeferred(f"route {route.pattern} has credentials but TLS none: credentials are only sent "
                               "over verified TLS; set the route's TLS to starttls or implicit")
    if route.tls == "implicit":
        return TlsPlan("never", "pkix", implicit=True, reason="route")
    if route.tls == "starttls" or route.username:
        return TlsPlan("require", "pkix", reason="route")
    return TlsPlan("never" if route.tls == "none" else "try", reason="route")


class OutboundDeliverer:
    def __init__(self, settings: OutboundSettings, resolver: Resolver, mta_sts: MtaSts | None,
                 decrypt: Decrypt) -> None:
        self.settings = settings
        self.resolver = resolver
        self.mta_sts = mta_sts
        self.decrypt = decrypt

    # choosing hosts and TLS plans

    async def candidates(self, destination: Destination) -> list[tuple[MxHost, TlsPlan]]:
        if destination.route is not None:
            return [(host, route_plan(destination.route)) for host in destination.hosts]
        policy = await self.mta_sts.policy(destination.domain) if self.mta_sts and self.settings.mta_sts else None
        chosen: list[tuple[MxHost, TlsPlan]] = []
        for host in destination.hosts:
            try:
                plan: TlsPlan | None = await self._dane_plan(host, destination.port)
            except DeliveryDeferred as exc:
                log_event("dane.tlsa_lookup", level="warning", domain=destination.domain, mx=host.name,
                          result="failure", detail=str(exc))
                continue
            if plan is None and policy is not None and policy.mode != "none":
                if not policy.allows(host.name):
                    log_event("mta_sts.mx_mismatch", level="warning", domain=destination.domain, mx=host.name,
                              mode=policy.mode)
                    if policy.mode == "enforce":
                        continue  # RFC 8461 4.1: never deliver to a host the policy does not list
                elif policy.mode == "enforce":
                    plan = TlsPlan("require", "pkix", reason="mta-sts")
            chosen.append((host, plan or OPPORTUNISTIC))
        if not chosen:
            raise DeliveryDeferred(f"no usable MX host of {destination.domain} (MTA-STS policy or DANE TLSA "
                                   "lookup failure)")
        return chosen

    async def _dane_plan(self, host: MxHost, port: int) -> TlsPlan | None:
        if not self.settings.dane:
            return None
        found = await tlsa_lookup(self.resolver, host.name, port)
        if found.failed and host.authenticated:
            # RFC 7672 2.2: a secure host whose TLSA lookup fails is unusable (no downgrade).
            raise DeliveryDeferred(f"TLSA lookup for {host.name} failed; the host is skipped")
        if not found.applies:
            return None
        # DANE-TA needs the presented chain; without a way to read it those records are unusable.
        usable = tuple(r for r in found.usable if r.usage != DANE_TA or chain_access_available())
        # RFC 7672 2.2: with only unusable TLSA records TLS is still required, without authentication.
        return TlsPlan("require", "dane" if usable else "none", tlsa=usable, reason="dane")

    # connections

    async def open(self, destination: Destination, candidates: Sequence[tuple[MxHost, TlsPlan]]) -> _Open:
        problems: list[str] = []
        for host, plan in candidates:
            for address in host.addresses:
                try:
                    client = await self._connect(host, address, destination, plan)
                except ConnectionFailed as exc:
                    problems.append(f"{host.name}[{address}]: {exc}")
                    log_event("delivery.connect", level="warning", domain=destination.domain, mx=host.name,
                              ip=address, port=destination.port, tls_policy=plan.reason, result="failure",
                              detail=str(exc))
                    continue
                return _Open(client, host, plan)
        raise DeliveryDeferred("; ".join(problems)[:1500] or f"no address for {destination.domain}")

    async def _connect(self, host: MxHost, address: str, destination: Destination, plan: TlsPlan) -> SmtpClient:
        context = self._context(plan) if plan.implicit else None
        client = await SmtpClient.connect(address, destination.port, self.settings.timeouts, context, host.name)
        try:
            await self._prepare(client, host, plan, destination.route)
        except BaseException:
            client.close()
            raise
        return client

    async def _prepare(self, client: SmtpClient, host: MxHost, plan: TlsPlan, route: Route | None) -> None:
        greeting = await client.read_reply()
        if greeting.code != 220:
            raise ConnectionFailed(f"greeting {greeting}")
        await self._ehlo(client)
        if plan.implicit:
            self._check_certificate(client, host, plan)
        elif plan.starttls != "never":
            await self._starttls(client, host, plan)
        if route is not None and route.username:
            await self._authenticate(client, route, plan)

    async def _ehlo(self, client: SmtpClient) -> None:
        reply = await client.ehlo(self.settings.helo_name)
        if not reply.is_positive:
            raise ConnectionFailed(f"EHLO refused: {reply}")

    async def _starttls(self, client: SmtpClient, host: MxHost, plan: TlsPlan) -> None:
        if not client.supports("STARTTLS"):
            if plan.starttls == "require":
                raise ConnectionFailed(f"STARTTLS not offered but required by {plan.reason} policy")
            return
        reply = await client.starttls(self._context(plan), host.name)
        if reply.code != 220:
            if plan.starttls == "require":
                raise ConnectionFailed(f"STARTTLS refused ({reply}) but required by {plan.reason} policy")
            return
        self._check_certificate(client, host, plan)
        await self._ehlo(client)

    def _context(self, plan: TlsPlan) -> ssl.SSLContext:
        return verified_context(self.settings.ca_file) if plan.verify == "pkix" else unverified_context()

    def _check_certificate(self, client: SmtpClient, host: MxHost, plan: TlsPlan) -> None:
        """DANE-EE or DANE-TA must authenticate the server (RFC 7672 3.1); the TLSA base domain is the MX name."""
        if plan.verify != "dane":
            return
        if not dane_authenticates(plan.tlsa, client.ssl_object, (host.name,)):
            raise ConnectionFailed("server certificate matches no DANE TLSA record")

    async def _authenticate(self, client: SmtpClient, route: Route, plan: TlsPlan) -> None:
        if client.tls_version is None or plan.verify != "pkix":
            raise ConnectionFailed("route credentials are only sent over TLS with a verified certificate")
        try:
            password = self.decrypt(route.password_encrypted)
        except ValueError:
            raise ConnectionFailed("route credentials cannot be decrypted with the server key") from None
        reply = await client.auth_plain(route.username, password)
        if reply.code != 235:
            raise ConnectionFailed(f"route authentication failed: {reply.code}")

    # sending

    async def deliver(self, destination: Destination, messages: Sequence[OutgoingMessage], on_result: OnResult,
                      prepare: Prepare = _unchanged) -> None:
        """Send ``messages`` over as few connections as possible; every message sent gets one result."""
        try:
            candidates = await self.candidates(destination)
        except DeliveryDeferred as exc:
            await _defer_all(messages, str(exc), on_result)
            return
        connection: _Open | None = None
        for index, queued in enumerate(messages):
            message = await prepare(queued)
            if message is None:
                continue
            if connection is None:
                try:
                    connection = await self.open(destination, candidates)
                except DeliveryDeferred as exc:
                    await _defer_all([message, *messages[index + 1:]], str(exc), on_result)
                    return
            result, reusable = await self._send_isolated(connection, message)
            await on_result(result)
            if not reusable:
                connection.client.close()
                connection = None
        if connection is not None:
            await connection.client.quit()

    async def _send_isolated(self, connection: _Open, message: OutgoingMessage) -> tuple[AttemptResult, bool]:
        """:meth:`_send`; an unexpected error defers this message only and drops the connection."""
        try:
            return await self._send(connection, message)
        except Exception as exc:
            text = f"4.3.0 internal error while sending: {type(exc).__name__}"
            log_event("delivery.internal_error", level="error", queue_id=message.queue_id,
                      mx=connection.host.name, detail=f"{type(exc).__name__}: {exc}"[:300])
            outcomes = all_outcomes(message, "pending", text, None, connection.host.name)
            return _result(connection.client, connection.host.name, message, outcomes, text), False

    async def _send(self, connection: _Open, message: OutgoingMessage) -> tuple[AttemptResult, bool]:
        client, mx = connection.client, connection.host.name
        refusal = extension_refusal(client, message)
        if refusal is not None:
            outcomes = all_outcomes(message, "failed", refusal.text, refusal.code, mx)
            return _result(client, mx, message, outcomes, str(refusal)), True
        try:
            replies = await client.transaction(mail_from_line(message.sender, mail_params(client, message)),
                                               message.recipients, message.data, client.supports("PIPELINING"),
                                               rcpt_params(client, message))
        except ConnectionFailed as exc:
            outcomes = all_outcomes(message, "pending", f"connection to {mx} lost: {exc}", None, mx)
            return _result(client, mx, message, outcomes, str(exc)), False
        # The outcomes come from the transaction's replies alone: a failing RSET afterwards only
        # means the connection cannot carry another message.
        result = _result(client, mx, message, outcomes_from(message, replies, mx), str(decisive_reply(replies)))
        return result, await _reset(client)


async def _reset(client: SmtpClient) -> bool:
    """RSET after a transaction; whether the connection can carry another message."""
    try:
        return (await client.rset()).code == 250
    except ConnectionFailed:
        return False


def _result(client: SmtpClient, mx: str, message: OutgoingMessage, outcomes: tuple[RecipientOutcome, ...],
            summary: str) -> AttemptResult:
    return AttemptResult(message, outcomes, mx, client.peer_ip, client.tls_version, summary)


def decisive_reply(replies: TransactionReplies) -> Reply:
    """The reply that decided the transaction: MAIL's if refused, a RCPT refusal if none was accepted, else DATA's."""
    if not replies.mail.is_positive:
        return replies.mail
    refused = [r for r in replies.rcpt.values() if not r.is_positive]
    if replies.data is None or len(refused) == len(replies.rcpt):
        return refused[0] if refused else replies.mail
    return replies.data


def mail_params(client: SmtpClient, message: OutgoingMessage) -> list[str]:
    """MAIL FROM parameters for the extensions the peer offers (RFC 1870, RFC 6152, RFC 6531)."""
    params = []
    if client.supports("SIZE"):
        params.append(f"SIZE={len(message.data)}")
    if message.needs_8bitmime and client.supports("8BITMIME"):
        params.append("BODY=8BITMIME")
    if message.needs_smtputf8 and client.supports("SMTPUTF8"):
        params.append("SMTPUTF8")
    if client.supports("DSN"):  # RFC 3461 4: relay the sender's request
        if message.ret:
            params.append(f"RET={message.ret}")
        if message.envid:
            params.append(f"ENVID={xtext(message.envid)}")
    return params


def rcpt_params(client: SmtpClient, message: OutgoingMessage) -> dict[str, list[str]]:
    """RCPT TO parameters: NOTIFY and ORCPT when the peer offers DSN (RFC 3461 4.1, 4.2, 6.2)."""
    if not client.supports("DSN"):
        return {}
    params: dict[str, list[str]] = {}
    for recipient in message.recipients:
        asked = message.recipient_dsn.get(recipient, RecipientDsn())
        found = []
        if asked.notify:
            found.append("NOTIFY=" + ",".join(asked.notify))
        if asked.orcpt:
            kind, _, address = asked.orcpt.partition(";")
            found.append(f"ORCPT={kind.strip()};{xtext(address.strip())}")
        params[recipient] = found
    return params


def extension_refusal(client: SmtpClient, message: OutgoingMessage) -> Reply | None:
    """A permanent failure when the message needs an extension the peer lacks (checked before MAIL)."""
    limit = client.extensions.get("SIZE", "")
    if limit.isdigit() and int(limit) > 0 and len(message.data) > int(limit):
        return Reply(552, (f"5.3.4 message size {len(message.data)} exceeds the remote limit {limit}",))
    if message.needs_smtputf8 and not client.supports("SMTPUTF8"):
        return Reply(553, ("5.6.7 message needs SMTPUTF8, which the remote server does not offer",))
    if message.needs_8bitmime and not client.supports("8BITMIME"):
        return Reply(554, ("5.6.3 message has 8-bit data and the remote server does not offer 8BITMIME",))
    return None


async def _defer_all(messages: Sequence[OutgoingMessage], text: str, on_result: OnResult) -> None:
    for message in messages:
        await on_result(AttemptResult(message, all_outcomes(message, "pending", text), summary=text))
