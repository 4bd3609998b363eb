"""The wire side of outbound SMTP: one connection, its replies, EHLO, STARTTLS, AUTH and transactions.

Written on asyncio streams rather than aiosmtplib because aiosmtplib reads one reply per command
and cannot do PIPELINING (RFC 2920), and because delivery needs every RCPT reply separately and its
own certificate checks after the handshake (DANE). ``StreamWriter.start_tls`` does the upgrade.
Every wait has a timeout; a timeout or lost connection raises :class:`ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

MAX_REPLY_LINES = 100
MAX_LINE = 4096


class ConnectionFailed(Exception):
    """The connection could not be made, broke, timed out or the TLS handshake failed."""


class ProtocolError(ConnectionFailed):
    """The peer sent something that is not an SMTP reply."""


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def is_positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {self.text}"[:500]


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 30.0
    command: float = 300.0
    data: float = 600.0


@dataclass
class TransactionReplies:
    mail: Reply
    rcpt: dict[str, Reply] = field(default_factory=dict)
    data: Reply | None = None


def parse_extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper-case) and their parameters (RFC 5321 4.1.1.1); the first line is the greeting."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params
    return extensions


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 4.5.2: a leading period on any line is doubled; the data ends in CRLF . CRLF."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


class SmtpClient:
    """One open connection to a remote SMTP server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeouts: Timeouts) -> None:
        self.reader = reader
        self.writer = writer
        self.timeouts = timeouts
        self.extensions: dict[str, str] = {}

    @classmethod
    async def connect(cls, address: str, port: int, timeouts: Timeouts,
                      tls: ssl.SSLContext | None = None, server_hostname: str | None = None) -> SmtpClient:
        """Open TCP (or implicit TLS when ``tls`` is given) to ``address``; raises ConnectionFailed."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address, port, ssl=tls, server_hostname=server_hostname if tls else None,
                                        limit=MAX_LINE * 4),
                timeouts.connect,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectionFailed(_describe(exc)) from exc
        return cls(reader, writer, timeouts)

    @property
    def peer_ip(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return str(peer[0]) if peer else ""

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        found = self.writer.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    @property
    def tls_version(self) -> str | None:
        found = self.ssl_object
        return None if found is None else found.version()

    def supports(self, keyword: str) -> bool:
        return keyword.upper() in self.extensions

    async def read_reply(self, timeout: float | None = None) -> Reply:
        lines: list[str] = []
        code = 0
        while len(lines) < MAX_REPLY_LINES:
            raw = await self._read_line(timeout or self.timeouts.command)
            if len(raw) < 3 or not raw[:3].isdigit() or raw[3:4] not in (b"", b" ", b"-"):
                raise ProtocolError(f"not an SMTP reply: {raw[:80]!r}")
            code = int(raw[:3])
            lines.append(raw[4:].decode("utf-8", "replace").strip())
            if raw[3:4] != b"-":
                return Reply(code, tuple(lines))
        raise ProtocolError("reply has too many lines")

    async def _read_line(self, timeout: float) -> bytes:
        try:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
        except (OSError, TimeoutError, ValueError, ssl.SSLError) as exc:
            raise ConnectionFailed(_describe(exc)) from exc
        if not line.endswith(b"\n"):
            raise ConnectionFailed("connection closed by the server")
        return line.rstrip(b"\r\n")

    async def send_line(self, line: str) -> None:
        await self.send_raw(line.encode("utf-8") + b"\r\n")

    async def send_raw(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeouts.command)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise ConnectionFailed(_describe(exc)) from exc

    async def command(self, line: str, timeout: float | None = None) -> Reply:
        await self.send_line(line)
        return await self.read_reply(timeout)

    async def ehlo(self, name: str) -> Reply:
        """EHLO, falling back to HELO for a server that does not know it (RFC 5321 3.2)."""
        reply = await self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = parse_extensions(reply)
            return reply
        self.extensions = {}
        return await self.command(f"HELO {name}")

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> Reply:
        """STARTTLS (RFC 3207); a non-220 reply is returned, a failed handshake raises ConnectionFailed."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        try:
            await asyncio.wait_for(
                self.writer.start_tls(context, server_hostname=server_hostname), self.timeouts.connect
            )
        except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            raise ConnectionFailed(f"TLS handshake failed: {_describe(exc)}") from exc
        self.extensions = {}  # RFC 3207 4.2: forget what was learnt before TLS
        return reply

    async def auth_plain(self, username: str, password: str) -> Reply:
        """AUTH PLAIN (RFC 4616) with the initial response; the credentials are never logged."""
        token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
        await self.send_line(f"AUTH PLAIN {token}")
        return await self.read_reply()

    async def transaction(self, mail_line: str, recipients: Sequence[str], message: bytes,
                          pipelining: bool, rcpt_params: Mapping[str, Sequence[str]] | None = None,
                          ) -> TransactionReplies:
        """MAIL, RCPT for each recipient (with its ``rcpt_params``), DATA and the message; pipelined
        when the peer allows it."""
        params = rcpt_params or {}
        if pipelining:  # RFC 2920 3.1: the whole group, then the replies in order
            await self.send_raw(b"".join(line.encode() + b"\r\n" for line in
                                         [mail_line, *(_rcpt(r, params.get(r, ())) for r in recipients), "DATA"]))
            replies = TransactionReplies(await self.read_reply())
            for recipient in recipients:
                replies.rcpt[recipient] = await self.read_reply()
            data_start = await self.read_reply()
        else:
            replies = TransactionReplies(await self.command(mail_line))
            if not replies.mail.is_positive:
                return replies
            for recipient in recipients:
                replies.rcpt[recipient] = await self.command(_rcpt(recipient, params.get(recipient, ())))
            if not any(r.is_positive for r in replies.rcpt.values()):
                return replies
            data_start = await self.command("DATA")
        return await self._finish_data(replies, data_start, message)

    async def _finish_data(self, replies: TransactionReplies, data_start: Reply, message: bytes) -> TransactionReplies:
        accepted = replies.mail.is_positive and any(r.is_positive for r in replies.rcpt.values())
        if data_start.code != 354:
            replies.data = data_start
            return replies
        if not accepted:
            # RFC 2920 3.1: DATA was accepted although no recipient was: send an empty message.
            await self.send_raw(b".\r\n")
            await self.read_reply(self.timeouts.data)
            replies.data = Reply(554, ("5.5.1 no valid recipients",))
            return replies
        await self.send_raw(dot_stuff(message))
        replies.data = await self.read_reply(self.timeouts.data)
        return replies

    async def rset(self) -> Reply:
        return await self.command("RSET")

    async def quit(self) -> None:
        """QUIT politely, then close; errors while closing do not matter any more."""
        with contextlib.suppress(ConnectionFailed, TimeoutError):
            await asyncio.wait_for(self.command("QUIT"), 5)
        self.close()

    def close(self) -> None:
        self.writer.close()


def _rcpt(recipient: str, params: Iterable[str] = ()) -> str:
    return " ".join([f"RCPT TO:<{recipient}>", *params])


def mail_from_line(sender: str, params: Iterable[str]) -> str:
    return " ".join([f"MAIL FROM:<{sender}>", *params])


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
