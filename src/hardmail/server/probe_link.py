"""The audit's client connection: raw bytes to a listener and its replies back, with a deadline on
every step, optional TLS (implicit or after STARTTLS/STLS) and a chosen source address.

The audit's probes (:mod:`hardmail.ops.audit`) say what to send; this module is the only part of
the audit that touches sockets. It never raises on what a peer does: a closed connection or a
deadline reads as ``None``, so that a probe can tell "refused" from "dropped" from "accepted".
A reply is read whole (SMTP: every ``NNN-`` line up to ``NNN ``; IMAP and POP3: one line), and
at most ``MAX_LINE`` bytes of one line are kept (a hostile peer cannot make it buffer without end).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

MAX_LINE = 16384  # bytes kept of one reply line; the rest of an overlong line is dropped
MAX_REPLY_LINES = 200


@dataclass(frozen=True, slots=True)
class SmtpReply:
    code: int
    lines: tuple[str, ...]  # the text of each line without the code and separator

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    def __str__(self) -> str:
        return f"{self.code} {self.text}"[:300]


def insecure_client_context(minimum: ssl.TLSVersion | None = None,
                            maximum: ssl.TLSVersion | None = None, ciphers: str | None = None) -> ssl.SSLContext:
    """A client context that accepts any certificate (the probes inspect it themselves), limited to
    the given versions and ciphers; ``@SECLEVEL=0`` so that OpenSSL will even offer TLS 1.0."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if ciphers is not None or (minimum is not None and minimum < ssl.TLSVersion.TLSv1_2):
        context.set_ciphers((ciphers or "ALL") + ":@SECLEVEL=0")
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


class ProbeLink:
    """One connection to a listener. Open with :meth:`open`; every read returns None on EOF or deadline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, *, timeout: float = 10.0, tls: ssl.SSLContext | None = None,
                   server_name: str | None = None, source_ip: str | None = None) -> ProbeLink:
        """Connect (implicit TLS when ``tls`` is given). Raises OSError (refused, unreachable,
        TLS handshake failed: ``ssl.SSLError``) or TimeoutError; nothing else."""
        local = (source_ip, 0) if source_ip else None
        opening = asyncio.open_connection(host, port, ssl=tls, server_hostname=(server_name or host) if tls else None,
                                          local_addr=local, limit=MAX_LINE * 4)
        reader, writer = await asyncio.wait_for(opening, timeout)
        return cls(reader, writer, timeout)

    # --- writing ------------------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False when the peer has gone."""
        if self.closed:
            return False
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.timeout)
        except (OSError, TimeoutError, ssl.SSLError):
            self.closed = True
            return False
        return True

    async def command(self, line: str | bytes) -> SmtpReply | None:
        """Send one SMTP command line (CRLF added) and read its reply."""
        data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
        if not await self.send(data + b"\r\n"):
            return None
        return await self.read_smtp_reply()

    # --- reading ------------------------------------------------------------------------

    async def read_line(self, timeout: float | None = None) -> bytes | None:
        """One line with its line ending, at most MAX_LINE bytes of it; None on EOF or deadline."""
        if self.closed:
            return None
        try:
            line = await asyncio.wait_for(self._read_bounded_line(), self.timeout if timeout is None else timeout)
        except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            return None
        if not line:
            self.closed = True
            return None
        return line

    async def _read_bounded_line(self) -> bytes:
        try:
            return await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:  # an overlong line: keep its head, drop the rest
            head = await self._reader.readexactly(exc.consumed)
            while True:
                try:
                    await self._reader.readuntil(b"\n")
                    return head[:MAX_LINE] + b"\r\n"
                except asyncio.LimitOverrunError as more:
                    await self._reader.readexactly(more.consumed)
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    async def read_smtp_reply(self, timeout: float | None = None) -> SmtpReply | None:
        """One whole SMTP reply (RFC 5321 4.2); None on EOF, deadline or a line that is no reply."""
        lines: list[str] = []
        for _ in range(MAX_REPLY_LINES):
            raw = await self.read_line(timeout)
            if raw is None:
                return None
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(text) < 3 or not text[:3].isdigit():
                return None
            lines.append(text[4:])
            if len(text) == 3 or text[3] != "-":
                return SmtpReply(int(text[:3]), tuple(lines))
        return None

    async def read_pending(self, quiet: float = 1.0) -> bytes:
        """Whatever the peer sends until it is quiet for ``quiet`` seconds (to catch replies to
        commands that should never have been read, as after a STARTTLS injection)."""
        chunks: list[bytes] = []
        while not self.closed:
            try:
                chunk = await asyncio.wait_for(self._reader.read(65536), quiet)
            except (OSError, TimeoutError, ssl.SSLError):
                break
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # --- TLS ------------------------------------------------------------------------------

    async def start_tls(self, context: ssl.SSLContext, server_name: str | None = None) -> bool:
        """Upgrade the connection after the peer said yes to STARTTLS/STLS; False when the handshake fails."""
        try:
            await asyncio.wait_for(self._writer.start_tls(context, server_hostname=server_name), self.timeout)
        except (OSError, TimeoutError, ssl.SSLError, ConnectionError):
            self.closed = True
            return False
        return True

    @property
    def tls_version(self) -> str | None:
        """"TLSv1.3" and the like, None without TLS."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object is not None else None

    @property
    def cipher(self) -> str | None:
        ssl_object = self._writer.get_extra_info("ssl_object")
        found = ssl_object.cipher() if ssl_object is not None else None
        return found[0] if found else None

    @property
    def peer_certificate(self) -> bytes | None:
        """The peer's certificate (DER), None without TLS."""
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None

    # --- end ------------------------------------------------------------------------------

    async def close(self) -> None:
        self.closed = True
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError, ConnectionError):
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)

    async def __aenter__(self) -> ProbeLink:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
