"""The SMTP side of the audit's probes: open a session on a target (greeting, EHLO, STARTTLS,
AUTH PLAIN) over :class:`~hardmail.server.probe_link.ProbeLink`, and say what the peer offers.

Shared by the relay and smuggling probes. Nothing here raises for what a peer does: a refused or
dropped step comes back as ``None`` or False, and :class:`SessionError` carries a short reason
(never a password) when a session cannot be opened at all.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass, field

from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.probe_wire import EHLO_NAME
from hardmail.server.probe_link import ProbeLink, SmtpReply, insecure_client_context


class SessionError(Exception):
    """A session could not be opened or upgraded; the text is evidence (no secrets)."""


@dataclass
class SmtpSession:
    link: ProbeLink
    target: ProbeTarget
    source_ip: str
    greeting: SmtpReply
    ehlo: SmtpReply | None = None
    authenticated: bool = False
    banners: list[str] = field(default_factory=list)  # greeting and EHLO texts seen (server identification)

    @property
    def extensions(self) -> set[str]:
        """EHLO keywords in upper case (RFC 5321 4.1.1.1: the lines after the first)."""
        if self.ehlo is None:
            return set()
        return {line.split()[0].upper() for line in self.ehlo.lines[1:] if line.split()}

    def offers(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    def auth_mechanisms(self) -> set[str]:
        for line in self.ehlo.lines[1:] if self.ehlo else ():
            words = line.upper().replace("=", " ").split()
            if words and words[0] == "AUTH":
                return set(words[1:])
        return set()

    def looks_like_postfix(self) -> bool:
        return any("postfix" in text.lower() for text in self.banners)


def helo_name(ctx: AuditContext) -> str:
    return EHLO_NAME


def tls_context() -> ssl.SSLContext:
    """The probes inspect certificates elsewhere (probe_tls); here any certificate will do."""
    return insecure_client_context()


async def open_session(ctx: AuditContext, target: ProbeTarget, source_ip: str) -> SmtpSession:
    """Connect (implicit TLS on submissions), read the greeting and say EHLO."""
    tls = tls_context() if target.implicit_tls else None
    try:
        link = await ProbeLink.open(target.host, target.port, timeout=ctx.timeout, tls=tls,
                                    source_ip=source_ip)
    except (OSError, TimeoutError) as exc:
        raise SessionError(f"could not connect to {target.label} from {source_ip}: {type(exc).__name__}") from None
    greeting = await link.read_smtp_reply()
    if greeting is None or greeting.code != 220:
        await link.close()
        raise SessionError(f"{target.label} sent no 220 greeting (got {greeting or 'nothing'})")
    session = SmtpSession(link, target, source_ip, greeting, banners=[greeting.text])
    await say_ehlo(ctx, session)
    return session


async def say_ehlo(ctx: AuditContext, session: SmtpSession) -> SmtpReply | None:
    reply = await session.link.command(f"EHLO {helo_name(ctx)}")
    session.ehlo = reply if reply is not None and reply.code == 250 else None
    if reply is not None:
        session.banners.append(reply.text)
    return session.ehlo


async def upgrade(ctx: AuditContext, session: SmtpSession) -> None:
    """STARTTLS and EHLO again (nothing to do inside implicit TLS); SessionError when it cannot."""
    if session.target.implicit_tls or session.link.tls_version is not None:
        return
    if not session.offers("STARTTLS"):
        raise SessionError(f"{session.target.label} does not offer STARTTLS")
    reply = await session.link.command("STARTTLS")
    if reply is None or reply.code != 220:
        raise SessionError(f"STARTTLS answered {reply or 'nothing'}")
    if not await session.link.start_tls(tls_context(), session.target.host):
        raise SessionError("the TLS handshake after STARTTLS failed")
    if await say_ehlo(ctx, session) is None:
        raise SessionError("EHLO inside TLS was refused")


async def authenticate(session: SmtpSession, login: ProbeLogin) -> SmtpReply | None:
    """AUTH PLAIN (RFC 4616) inside TLS; the reply (235 on success), None when the peer dropped."""
    if session.link.tls_version is None:
        raise SessionError("AUTH is only ever sent inside TLS")
    token = base64.b64encode(f"\0{login.address}\0{login.password}".encode()).decode("ascii")
    reply = await session.link.command(f"AUTH PLAIN {token}")
    session.authenticated = reply is not None and reply.code == 235
    return reply


async def close(session: SmtpSession) -> None:
    """QUIT politely (without waiting long for 221) and close."""
    if not session.link.closed:
        await session.link.send(b"QUIT\r\n")
        await session.link.read_smtp_reply(timeout=min(2.0, session.link.timeout))
    await session.link.close()
