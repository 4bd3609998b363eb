"""Test support for the audit's authentication, TLS and session probes: an audit context for a
live hardmail (``support.live``) and small deliberately weak servers on loopback for what hardmail
cannot be configured to do (VRFY that tells users apart, sender spoofing, serving a banned source).

:class:`WeakSmtp` is a minimal SMTP server, run on its own thread and event loop like
``support.live.ServerThread``; each weakness is a flag. It never stores or relays anything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hardmail.config.schema import Config
from hardmail.msgauth.dns import DnsAnswer
from hardmail.ops.audit.context import AuditContext, ProbeLogin, ProbeTarget
from hardmail.ops.audit.findings import Finding, Severity
from support.live import ServerThread

T = TypeVar("T")
ALL_KINDS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")


class NoResolver:
    """These probes never resolve names: a test fails if one tries."""

    async def resolve(self, name: str, rdtype: str) -> DnsAnswer:
        raise AssertionError(f"the probe looked up {name} {rdtype}")


def hardmail_targets(server: ServerThread, *kinds: str) -> list[ProbeTarget]:
    return [ProbeTarget(kind, *server.address(kind)) for kind in kinds or ALL_KINDS]


def audit_context(config: Config, targets: Sequence[ProbeTarget], **values: Any) -> AuditContext:
    values.setdefault("timeout", 10.0)
    return AuditContext(config=config, resolver=NoResolver(), targets=list(targets), **values)


def by_target(findings: Sequence[Finding], check: str) -> dict[str, Finding]:
    """The findings of one check, by target label; fails on a duplicate."""
    found: dict[str, Finding] = {}
    for finding in findings:
        if finding.check == check:
            assert finding.target not in found, f"two findings of {check} for {finding.target}"
            found[finding.target] = finding
    return found


def severities(findings: Sequence[Finding], check: str) -> dict[str, Severity]:
    return {label: f.severity for label, f in by_target(findings, check).items()}


def probe_login(address: str, password: str, foreign: str) -> ProbeLogin:
    return ProbeLogin(address, password, foreign)


# --- certificates ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def make_ca(common_name: str = "Audit Test CA") -> Issuer:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return Issuer(name, ec.generate_private_key(ec.SECP256R1()))


def make_certificate(hostname: str, *, days_left: float, issuer: Issuer | None = None,
                     now: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for ``hostname`` ending ``days_left`` days from ``now`` (negative: expired),
    self-signed unless an ``issuer`` signs it."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    signer = issuer or Issuer(subject, key)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer.name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30)).not_valid_after(now + dt.timedelta(days=days_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(signer.key, hashes.SHA256()))
    return cert, key


def write_certificate(directory: Path, hostname: str, **options: Any) -> dict[str, str]:
    """A certificate and its key as PEM files under ``directory``: the [tls] settings that load them."""
    cert, key = make_certificate(hostname, **options)
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return {"cert_file": str(cert_path), "key_file": str(key_path)}


# --- a deliberately weak SMTP server ---------------------------------------------------------------

@dataclass
class WeakSmtpFlags:
    users: frozenset[str] = frozenset()  # addresses it knows (VRFY/EXPN and RCPT)
    vrfy_tells: bool = False  # VRFY/EXPN answer 250 for a known user, 550 for another
    spoofing: bool = False  # an authenticated user may send as anybody (MAIL FROM and From:)
    temporary: bool = False  # 451 4.7.1 to every MAIL FROM and NOOP (a greylisting or overloaded server)
    aliases: frozenset[str] = frozenset()  # addresses every authenticated user may send as too (own aliases)
    max_line: int = 0  # 0: no limit on command lines
    refuse_all: bool = False  # 554 at the greeting (a server that refuses a banned source)


@dataclass
class WeakSmtpState:
    connections: list[str] = field(default_factory=list)  # peer address of each connection
    delivered: list[bytes] = field(default_factory=list)  # messages it answered 250 to


class WeakSmtp:
    """A plain-text SMTP server on 127.0.0.1 with AUTH PLAIN (any password of a known user)."""

    def __init__(self, flags: WeakSmtpFlags) -> None:
        self.flags = flags
        self.state = WeakSmtpState()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.port = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self.thread.start()
        self.server = self.run(self._listen())
        self.port = self.server.sockets[0].getsockname()[1]

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._session, "127.0.0.1", 0, limit=1 << 20)

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.run(self.server.wait_closed())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def target(self, kind: str = "smtp") -> ProbeTarget:
        return ProbeTarget(kind, "127.0.0.1", self.port)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.state.connections.append(writer.get_extra_info("peername")[0])
        try:
            await _WeakSession(self, reader, writer).run()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


class _WeakSession:
    def __init__(self, owner: WeakSmtp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.flags = owner.flags
        self.state = owner.state
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.sender: str | None = None

    async def say(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def run(self) -> None:
        if self.flags.refuse_all:
            await self.say("554 5.7.1 not for you")
            return
        await self.say("220 weak.example.test ESMTP weak")
        while line := await self.reader.readline():
            if self.flags.max_line and len(line) > self.flags.max_line:
                await self.say("500 5.5.6 line too long")
                continue
            verb, _, argument = line.decode("utf-8", "replace").strip().partition(" ")
            if not await self.command(verb.upper(), argument):
                return

    async def command(self, verb: str, argument: str) -> bool:
        if verb == "QUIT":
            await self.say("221 bye")
            return False
        if verb == "EHLO":
            await self.say("250-weak.example.test\r\n250-AUTH PLAIN\r\n250 8BITMIME")
        elif verb in ("VRFY", "EXPN"):
            await self.say(self.vrfy(argument))
        elif verb == "AUTH":
            await self.auth(argument)
        elif verb == "MAIL":
            await self.mail(argument)
        elif verb == "RCPT":
            await self.say("250 2.1.5 ok")
        elif verb == "DATA":
            await self.data()
        elif verb == "NOOP" and self.flags.temporary:
            await self.say("451 4.3.2 try again later")
        else:  # NOOP, RSET, ...
            self.sender = None if verb == "RSET" else self.sender
            await self.say("250 2.0.0 ok")
        return True

    def vrfy(self, argument: str) -> str:
        address = argument.strip().strip("<>").lower()
        if not self.flags.vrfy_tells:
            return "252 2.5.0 cannot verify"
        return f"250 2.1.5 <{address}>" if address in self.flags.users else "550 5.1.1 no such user"

    async def auth(self, argument: str) -> None:
        import base64

        try:
            _, user, _ = base64.b64decode(argument.split()[1]).decode().split("\0")
        except (IndexError, ValueError):
            await self.say("501 5.5.2 bad")
            return
        if user.lower() in self.flags.users:
            self.user = user.lower()
            await self.say("235 2.7.0 ok")
        else:
            await self.say("535 5.7.8 no")

    async def mail(self, argument: str) -> None:
        if self.flags.temporary:
            await self.say("451 4.7.1 try again later")
            return
        self.sender = argument.partition(":")[2].strip().strip("<>").lower()
        if self.user is not None and self.sender not in {self.user, *self.flags.aliases} and not self.flags.spoofing:
            await self.say("553 5.7.1 not yours")
            self.sender = None
            return
        await self.say("250 2.1.0 ok")

    async def data(self) -> None:
        await self.say("354 go on")
        message = await self.reader.readuntil(b"\r\n.\r\n")
        header_from = next((line for line in message.split(b"\r\n") if line.lower().startswith(b"from:")), b"")
        own = (a.encode() for a in {self.user or "", *self.flags.aliases})
        if self.user is not None and not any(a in header_from.lower() for a in own) and not self.flags.spoofing:
            await self.say("553 5.7.1 From: not yours")
            return
        self.state.delivered.append(message)
        await self.say("250 2.0.0 queued")


@contextmanager
def weak_smtp(**flags: Any) -> Iterator[WeakSmtp]:
    server = WeakSmtp(WeakSmtpFlags(**flags))
    server.start()
    try:
        yield server
    finally:
        server.stop()
