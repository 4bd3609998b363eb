"""The three mail protocols as the authentication, TLS and session probes speak them over a
:class:`~hardmail.server.probe_link.ProbeLink`: connect, read the greeting, ask for the
capabilities (SMTP EHLO, IMAP CAPABILITY, POP3 CAPA), upgrade with STARTTLS/STLS, and send one
IMAP or POP3 command, sign in with AUTH PLAIN (:func:`auth_plain`, the only code that touches the
probe account's password, and only inside TLS). Nothing here decides what a reply means for
security; the probe modules do.

Every function returns None (or False) for what a peer does wrong (closed, silent, refused), never
raises for it; :func:`connect` raises OSError or TimeoutError when there is no connection at all.
The relay and smuggling probes use the thin raising wrappers :func:`open_smtp` and :func:`upgrade`,
whose :class:`SessionError` carries a short reason (never a password).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.findings import CheckInfo, Finding
from hardmail.server.probe_link import ProbeLink, SmtpReply, insecure_client_context

EHLO_NAME = "audit-probe.invalid"  # RFC 2606: a name that is no host of anybody's
MADE_UP_USER = "audit-probe-nonexistent@invalid"  # the only user name the AUTH probes send in clear text
MAX_IMAP_LINES = 100
MAX_CAPA_LINES = 100
_tags = itertools.count(1)


@dataclass
class Talk:
    """One open conversation: the link, the greeting and the capabilities last seen."""

    target: ProbeTarget
    link: ProbeLink
    greeting: str = ""
    capabilities: list[str] = field(default_factory=list)  # upper-case: "AUTH PLAIN LOGIN", "STARTTLS", "AUTH=PLAIN"
    source_ip: str | None = None  # the address it was opened from (None: the system's choice)
    ehlo: SmtpReply | None = None  # SMTP: the last 250 reply to EHLO
    authenticated: bool = False  # AUTH succeeded (auth_plain)

    @property
    def protocol(self) -> str:
        return self.target.protocol

    def keywords(self) -> set[str]:
        """The capability names ("STARTTLS", "AUTH", "CHUNKING"; IMAP "AUTH=PLAIN" stays whole)."""
        return {cap.split()[0] for cap in self.capabilities if cap.split()}

    def auth_mechanisms(self) -> set[str]:
        """The SASL mechanisms offered (SMTP "AUTH PLAIN LOGIN" or "AUTH=PLAIN", IMAP "AUTH=PLAIN", POP3 "SASL ...")."""
        word = "SASL" if self.protocol == "pop3" else "AUTH"
        return {value for found in self.capability_values(word) for value in found.split()}

    def looks_like_postfix(self) -> bool:
        return any("postfix" in text.lower() for text in (self.greeting, self.ehlo.text if self.ehlo else ""))

    def offers(self, word: str) -> bool:
        """Whether a capability is ``word`` or starts with ``word`` and a space ("AUTH", "SASL")."""
        word = word.upper()
        return any(cap == word or cap.startswith(word + " ") for cap in self.capabilities)

    def capability_values(self, word: str) -> list[str]:
        """The words after ``word`` ("AUTH PLAIN LOGIN" -> PLAIN, LOGIN; IMAP "AUTH=PLAIN" -> PLAIN)."""
        word = word.upper()
        found = [cap[len(word) + 1:] for cap in self.capabilities if cap.startswith(word + "=")]
        for cap in self.capabilities:
            if cap.startswith(word + " "):
                found += cap.split()[1:]
        return found


def temporary(reply: SmtpReply | None) -> bool:
    """A 4xx reply (421, 450, 451, 452, 454...): the server refused for now, which says nothing of
    what it would do; the probes report it as not checked (INFO), never as a pass."""
    return reply is not None and 400 <= reply.code < 500


def tag() -> str:
    return f"p{next(_tags)}"


def public_server_name(name: str | None) -> bool:
    """Whether ``name`` is a DNS name on the public Internet (not an address, not a reserved or
    local name such as localhost, *.test, *.example, *.invalid, *.local)."""
    if not name or "." not in name.strip("."):
        return False
    name = name.lower().rstrip(".")
    if name.replace(".", "").isdigit() or ":" in name:
        return False
    private = ("localhost", "test", "example", "invalid", "local", "localdomain", "internal", "lan",
               "home.arpa", "corp", "home")
    return not any(name == p or name.endswith("." + p) for p in private)


async def connect(target: ProbeTarget, ctx: AuditContext, *, tls: ssl.SSLContext | None = None,
                  source_ip: str | None = None, server_name: str | None = None) -> ProbeLink:
    """A link to ``target``; an implicit-TLS target gets ``tls`` or an accept-anything context.
    Raises OSError (ssl.SSLError for a failed handshake) or TimeoutError."""
    context = (tls or insecure_client_context()) if target.implicit_tls else None
    return await ProbeLink.open(target.host, target.port, timeout=ctx.timeout, tls=context,
                                server_name=server_name, source_ip=source_ip)


async def greet(talk: Talk) -> bool:
    """Read the greeting; False when the server refused (4xx/5xx, BYE, -ERR) or said nothing."""
    if talk.protocol == "smtp":
        reply = await talk.link.read_smtp_reply()
        talk.greeting = str(reply) if reply is not None else ""
        return reply is not None and reply.code == 220
    line = await talk.link.read_line()
    talk.greeting = line.decode("utf-8", "replace").strip()[:300] if line else ""
    if talk.protocol == "imap":
        return talk.greeting.upper().startswith(("* OK", "* PREAUTH"))
    return talk.greeting.upper().startswith("+OK")


async def ask_capabilities(talk: Talk) -> bool:
    """EHLO / CAPABILITY / CAPA; False when the server did not answer with a list."""
    if talk.protocol == "smtp":
        reply = await talk.link.command(f"EHLO {EHLO_NAME}")
        if reply is None or reply.code != 250:
            talk.ehlo = None
            return False
        talk.ehlo = reply
        talk.capabilities = [line.strip().upper() for line in reply.lines[1:]]
        return True
    if talk.protocol == "imap":
        status, untagged = await imap_command(talk.link, "CAPABILITY")
        words = [w.upper() for line in untagged if line.upper().startswith("* CAPABILITY")
                 for w in line.split()[2:]]
        talk.capabilities = words
        return status.upper().startswith("OK") and bool(words)
    return await _pop3_capa(talk)


async def _pop3_capa(talk: Talk) -> bool:
    first = await pop3_command(talk.link, "CAPA")
    if first is None or not first.upper().startswith("+OK"):
        return False
    caps: list[str] = []
    for _ in range(MAX_CAPA_LINES):  # RFC 2449 5: lines up to a lone "."
        raw = await talk.link.read_line()
        if raw is None:
            return False
        text = raw.decode("utf-8", "replace").strip()
        if text == ".":
            talk.capabilities = caps
            return True
        caps.append(text.upper())
    return False


async def start_tls(talk: Talk, context: ssl.SSLContext | None = None, server_name: str | None = None) -> str:
    """STARTTLS (SMTP, IMAP) or STLS (POP3) and the handshake: "" when TLS is on, else what went
    wrong ("STARTTLS answered 454 ...", "handshake failed")."""
    if talk.protocol == "smtp":
        reply = await talk.link.command("STARTTLS")
        if reply is None or reply.code != 220:
            return f"STARTTLS answered {reply}" if reply else "no answer to STARTTLS"
    elif talk.protocol == "imap":
        status, _ = await imap_command(talk.link, "STARTTLS")
        if not status.upper().startswith("OK"):
            return f"STARTTLS answered {status[:200]!r}" if status else "no answer to STARTTLS"
    else:
        line = await pop3_command(talk.link, "STLS")
        if line is None or not line.upper().startswith("+OK"):
            return f"STLS answered {line[:200]!r}" if line else "no answer to STLS"
    if not await talk.link.start_tls(context or insecure_client_context(), server_name):
        return "TLS handshake failed"
    return ""


async def open_talk(target: ProbeTarget, ctx: AuditContext, *, tls: ssl.SSLContext | None = None,
                    source_ip: str | None = None, server_name: str | None = None) -> Talk | str:
    """Connect, read the greeting and the capabilities (without STARTTLS); a text saying what went
    wrong otherwise."""
    try:
        link = await connect(target, ctx, tls=tls, source_ip=source_ip, server_name=server_name)
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or type(exc).__name__})"
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        if target.implicit_tls:  # the server hung up in the middle of the handshake
            return f"TLS handshake failed (connection closed: {type(exc).__name__})"
        return f"could not connect ({type(exc).__name__})"
    except (OSError, TimeoutError) as exc:
        return f"could not connect ({type(exc).__name__})"
    talk = Talk(target, link, source_ip=source_ip)
    if not await greet(talk):
        await link.close()
        return f"greeting: {talk.greeting!r}" if talk.greeting else "no greeting"
    if not await ask_capabilities(talk):
        await link.close()
        return "no capability list"
    return talk


async def open_secure(target: ProbeTarget, ctx: AuditContext, *, tls: ssl.SSLContext | None = None,
                      server_name: str | None = None) -> Talk | str:
    """A talk inside TLS: implicit, or STARTTLS/STLS and the capabilities again."""
    talk = await open_talk(target, ctx, tls=tls, server_name=server_name)
    if isinstance(talk, str) or target.implicit_tls:
        return talk
    problem = await start_tls(talk, tls, server_name)
    if not problem and await ask_capabilities(talk):
        return talk
    await talk.link.close()
    return problem or "no capability list after STARTTLS"


async def imap_command(link: ProbeLink, line: str) -> tuple[str, list[str]]:
    """Send one tagged IMAP command; its tagged status ("OK ...", "NO ...", "BAD ...", "" when none
    came) and the untagged lines before it. A "+" continuation ends the read with status "+ ..."."""
    name = tag()
    if not await link.send(f"{name} {line}\r\n".encode("utf-8", "surrogateescape")):
        return "", []
    return await imap_status(link, name)


async def imap_status(link: ProbeLink, name: str) -> tuple[str, list[str]]:
    untagged: list[str] = []
    for _ in range(MAX_IMAP_LINES):
        raw = await link.read_line()
        if raw is None:
            return "", untagged
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if text.startswith(name + " "):
            return text[len(name) + 1:][:300], untagged
        if text.startswith("+"):
            return text[:300], untagged
        untagged.append(text[:1000])
    return "", untagged


async def pop3_command(link: ProbeLink, line: str) -> str | None:
    """Send one POP3 command; its status line ("+OK ...", "-ERR ...", "+ ..." for SASL), None when none came."""
    if not await link.send(line.encode("utf-8", "surrogateescape") + b"\r\n"):
        return None
    raw = await link.read_line()
    return raw.decode("utf-8", "replace").strip()[:300] if raw is not None else None


async def quit_politely(talk: Talk) -> None:
    """QUIT / LOGOUT and close; never raises."""
    command = {"smtp": "QUIT", "imap": f"{tag()} LOGOUT", "pop3": "QUIT"}[talk.protocol]
    if await talk.link.send(command.encode() + b"\r\n"):
        await talk.link.read_line(timeout=min(2.0, talk.link.timeout))
    await talk.link.close()


async def each_target(check: CheckInfo, ctx: AuditContext, targets: Sequence[ProbeTarget], what: str,
                      probe: Callable[[ProbeTarget], Awaitable[Finding]]) -> list[Finding]:
    """One finding of ``check`` per target, probed at once; one INFO finding when the server does not
    run or no target fits (``what`` says which targets it wants)."""
    if not ctx.running:
        return [check.skipped("no server is running")]
    if not targets:
        return [check.skipped(f"no {what} to probe")]
    return list(await asyncio.gather(*(probe(target) for target in targets)))


# --- signing in, and the raising wrappers of the relay and smuggling probes ---------------------


class SessionError(Exception):
    """A session could not be opened, upgraded or signed in; the text is evidence (no secrets)."""


async def auth_plain(talk: Talk, login: ProbeLogin) -> SmtpReply | None:
    """SMTP AUTH PLAIN (RFC 4954 4 with RFC 4616) as ``login``: the reply (235 on success), None when
    the peer dropped. Raises SessionError outside TLS: the password never goes out in clear text."""
    if talk.link.tls_version is None or talk.protocol != "smtp":
        raise SessionError("AUTH is only ever sent inside TLS")
    token = base64.b64encode(f"\0{login.address}\0{login.password}".encode()).decode("ascii")
    reply = await talk.link.command(f"AUTH PLAIN {token}")
    talk.authenticated = reply is not None and reply.code == 235
    return reply


async def open_smtp(ctx: AuditContext, target: ProbeTarget, source_ip: str) -> Talk:
    """:func:`open_talk` from ``source_ip``; SessionError instead of a text when it cannot."""
    talk = await open_talk(target, ctx, source_ip=source_ip)
    if isinstance(talk, str):
        raise SessionError(f"{target.label} from {source_ip}: {talk}")
    return talk


async def upgrade(talk: Talk) -> None:
    """STARTTLS and EHLO again (nothing to do inside TLS already); SessionError when it cannot."""
    if talk.target.implicit_tls or talk.link.tls_version is not None:
        return
    if "STARTTLS" not in talk.keywords():
        raise SessionError(f"{talk.target.label} does not offer STARTTLS")
    problem = await start_tls(talk, None, talk.target.host)
    if problem:
        raise SessionError(problem)
    if not await ask_capabilities(talk):
        raise SessionError("EHLO inside TLS was refused")
