"""Listening sockets: one asyncio server per configured address, a session task per connection,
and a graceful stop that lets messages in flight finish."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from hardmail.config.schema import parse_host_port
from hardmail.ops.log import log_event
from hardmail.server.channel import Channel
from hardmail.server.context import ServerContext
from hardmail.server.listen_errors import ListenError
from hardmail.server.prefork import LISTEN_BACKLOG, ListeningSocket
from hardmail.server.proxy_edge import accept_proxied
from hardmail.server.smtp_session import SmtpSession

KINDS = ("smtp", "submission", "submissions")


@dataclass(frozen=True, slots=True)
class BoundAddress:
    kind: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class Listeners:
    ctx: ServerContext
    servers: list[asyncio.Server] = field(default_factory=list)
    bound: list[BoundAddress] = field(default_factory=list)
    sessions: dict[asyncio.Task[None], SmtpSession | None] = field(default_factory=dict)

    async def start(self, sockets: list[ListeningSocket] | None = None) -> list[BoundAddress]:
        """Listen on every configured address, or on ``sockets`` bound earlier (worker processes)."""
        proxied_addresses = self.ctx.config.access.proxy_protocol.listeners
        if sockets is not None:
            for listening in sockets:
                await self._adopt(listening.kind, listening.sock, listening.address in proxied_addresses)
            return self.bound
        for kind in KINDS:
            for address in getattr(self.ctx.config.listen, kind):
                await self._listen(kind, *parse_host_port(address), proxied=address in proxied_addresses)
        return self.bound

    async def _listen(self, kind: str, host: str, port: int, proxied: bool = False) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            server = await loop.create_server(
                lambda: self._accept(kind, proxied), host or None, port, family=family, reuse_address=True,
                backlog=LISTEN_BACKLOG,
            )
        except OSError as exc:
            raise ListenError(host, port, exc) from exc
        self._serving(kind, server)

    async def _adopt(self, kind: str, sock: socket.socket, proxied: bool) -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: self._accept(kind, proxied), sock=sock, backlog=LISTEN_BACKLOG)
        self._serving(kind, server)

    def _serving(self, kind: str, server: asyncio.Server) -> None:
        self.servers.append(server)
        for sock in server.sockets:
            name = sock.getsockname()
            self.bound.append(BoundAddress(kind, str(name[0]), int(name[1])))

    def _accept(self, kind: str, proxied: bool = False) -> Channel:
        channel = Channel(implicit_tls=kind == "submissions")
        task = asyncio.get_running_loop().create_task(self._serve(kind, channel, proxied))
        self.sessions[task] = None
        task.add_done_callback(self._forget)
        return channel

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.sessions.pop(task, None)

    async def _serve(self, kind: str, channel: Channel, proxied: bool = False) -> None:
        await channel.connected
        if proxied and not await accept_proxied(channel, self.ctx.config.access.proxy_protocol):
            channel.abort()
            return
        try:
            session = SmtpSession(self.ctx, kind, channel)
            task = asyncio.current_task()
            if task in self.sessions:
                self.sessions[task] = session
            await session.run()
        except Exception as exc:  # a bug must cost one session, never the server
            # peer: a crash one client can cause again and again counts against its log rate limit
            log_event("smtp.session_crash", level="error", peer=channel.peer()[0], error=type(exc).__name__,
                      detail=str(exc)[:300])
            channel.abort()

    async def stop(self, grace: float = 10.0) -> None:
        for server in self.servers:
            server.close()
        for session in list(self.sessions.values()):
            if session is not None:
                session.shut_down_if_idle()
        if self.sessions:
            _, pending = await asyncio.wait(set(self.sessions), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()
