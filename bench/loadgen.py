"""Our asyncio SMTP load client: N concurrent sessions send M messages and check every reply code.

Each session speaks plain SMTP (or STARTTLS then AUTH PLAIN) and sends MAIL, RCPT, DATA and the
message, one command at a time, expecting exactly 220/250/354/235 where RFC 5321 says so; any
other reply or a broken connection is counted as an error (by reply code or exception name).
With ``reuse`` a session sends its messages over one connection; without, each message gets a new
connection (greeting, EHLO, [STARTTLS, EHLO, AUTH], MAIL, RCPT, DATA, QUIT).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoadPlan:
    host: str
    port: int
    sender: str
    recipient: str
    sessions: int = 20
    messages: int = 2000
    size: int = 512
    reuse: bool = True
    starttls: bool = False
    auth: tuple[str, str] | None = None  # (user, password), sent with AUTH PLAIN after STARTTLS


OPEN_ATTEMPTS = 20  # tries to open one session of a reuse run


@dataclass
class LoadResult:
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    setup_errors: int = 0  # refusals while opening the sessions of a reuse run (e.g. 454: hashing busy), retried

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed else 0.0


class ReplyError(Exception):
    def __init__(self, code: str, line: bytes) -> None:
        super().__init__(f"{code}: {line[:120]!r}")
        self.code = code


def message_bytes(sender: str, recipient: str, size: int) -> bytes:
    """A message with a small header and a ``size``-byte body in 78-octet lines, ending in CRLF."""
    head = (f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: benchmark\r\n"
            f"Message-ID: <bench@loadgen.invalid>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n" if len(body) >= 2 else b"\r\n"
    return head + body


class SmtpClient:
    def __init__(self, plan: LoadPlan, tls: ssl.SSLContext | None) -> None:
        self.plan, self.tls = plan, tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def reply(self, expected: str) -> None:
        assert self.reader is not None
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionResetError("server closed the connection")
            if line[3:4] != b"-":
                break
        if line[:3] != expected.encode():
            raise ReplyError(line[:3].decode(errors="replace"), line)

    async def command(self, line: bytes, expected: str) -> None:
        assert self.writer is not None
        self.writer.write(line)
        await self.reply(expected)

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.plan.host, self.plan.port)
        await self.reply("220")
        await self.command(b"EHLO loadgen.bench.invalid\r\n", "250")
        if self.plan.starttls:
            await self.command(b"STARTTLS\r\n", "220")
            await self.writer.start_tls(self.tls or _client_tls())
            await self.command(b"EHLO loadgen.bench.invalid\r\n", "250")
        if self.plan.auth:
            token = base64.b64encode(b"\0" + self.plan.auth[0].encode() + b"\0" + self.plan.auth[1].encode())
            await self.command(b"AUTH PLAIN " + token + b"\r\n", "235")

    async def send(self, message: bytes) -> None:
        await self.command(f"MAIL FROM:<{self.plan.sender}>\r\n".encode(), "250")
        await self.command(f"RCPT TO:<{self.plan.recipient}>\r\n".encode(), "250")
        await self.command(b"DATA\r\n", "354")
        await self.command(message + b".\r\n", "250")

    async def close(self, polite: bool = True) -> None:
        if self.writer is None:
            return
        try:
            if polite:
                await self.command(b"QUIT\r\n", "221")
        except (OSError, ReplyError):
            pass
        finally:
            self.writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await self.writer.wait_closed()
            self.writer = self.reader = None


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the peers use throwaway self-signed certificates
    return context


async def _opened(plan: LoadPlan, result: LoadResult, tls: ssl.SSLContext) -> SmtpClient:
    """A session that has its greeting, EHLO, TLS and AUTH behind it (retried after a refusal)."""
    for _attempt in range(OPEN_ATTEMPTS):
        client = SmtpClient(plan, tls)
        try:
            await client.open()
            return client
        except (OSError, ReplyError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            result.errors[exc.code if isinstance(exc, ReplyError) else type(exc).__name__] += 1
            await client.close(polite=False)
    raise RuntimeError(f"could not open a session in {OPEN_ATTEMPTS} attempts: {dict(result.errors)}")


async def _session(plan: LoadPlan, queue: list[int], message: bytes, result: LoadResult,
                   tls: ssl.SSLContext, client: SmtpClient | None = None) -> None:
    client = client or SmtpClient(plan, tls)
    while queue:
        queue.pop()
        try:
            if client.writer is None:
                await client.open()
            await client.send(message)
            result.sent += 1
            if not plan.reuse:
                await client.close()
        except (OSError, ReplyError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            result.errors[exc.code if isinstance(exc, ReplyError) else type(exc).__name__] += 1
            await client.close(polite=False)
    await client.close()


async def run_load(plan: LoadPlan) -> LoadResult:
    """Send ``plan.messages`` messages over ``plan.sessions`` concurrent sessions. With ``reuse``
    the clock starts once every session is open (connected, TLS and AUTH done: what reusing a
    connection saves); without it, every message's connection is timed."""
    queue = list(range(plan.messages))
    message = message_bytes(plan.sender, plan.recipient, plan.size)
    result = LoadResult()
    tls = _client_tls()
    clients: list[SmtpClient | None] = [None] * plan.sessions
    if plan.reuse:
        clients = list(await asyncio.gather(*(_opened(plan, result, tls) for _ in range(plan.sessions))))
        result.setup_errors = sum(result.errors.values())
        result.errors.clear()
    started = time.perf_counter()
    await asyncio.gather(*(_session(plan, queue, message, result, tls, client) for client in clients))
    result.elapsed = time.perf_counter() - started
    return result


def run_load_sync(plan: LoadPlan) -> LoadResult:
    """:func:`run_load` in a fresh event loop (uvloop when installed, for the client's own speed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run_load(plan))
    return uvloop.run(run_load(plan))
