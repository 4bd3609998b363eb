"""Listening sockets: one asyncio server per configured address, a session task per connection,
and a graceful stop that lets messages in flight finish.

Every listener kind (``[listen]`` smtp, submission, submissions, imap, imaps, pop3, pop3s) is
served by the session class registered for it with :func:`register_session`; a session module
registers its kinds when it is imported, and :mod:`hardmail.server.session_kinds` imports every
session module of this build. A configured kind that no session serves is not listened on (a
warning says so, see :func:`unserved_listeners`). Implicit-TLS kinds get a channel that holds the
ClientHello until the session starts TLS; everything else (STARTTLS, greeting, commands) is the
session's business.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from hardmail.config.schema import Config, parse_host_port
from hardmail.ops.log import log_event
from hardmail.server.channel import Channel
from hardmail.server.context import ServerContext
from hardmail.server.listen_errors import ListenError
from hardmail.server.prefork import LISTEN_BACKLOG, ListeningSocket
from hardmail.server.proxy_edge import accept_proxied

# Every kind of listener, in the order they are listened on and printed.
KINDS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s")
IMPLICIT_TLS_KINDS = frozenset({"submissions", "imaps", "pop3s"})
# The protocol of each kind: the prefix of its sessions' log events.
PROTOCOL_OF_KIND = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp", "imap": "imap", "imaps": "imap",
                    "pop3": "pop3", "pop3s": "pop3"}


class Session(Protocol):
    """What the listener needs of a session: run it to its end, and end it at server stop."""

    async def run(self) -> None: ...

    def shut_down_if_idle(self) -> bool:
        """At server stop: close now when waiting for the client (True), else after the command."""
        ...


SessionFactory = Callable[[ServerContext, str, Channel], Session]  # (ctx, kind, channel)
SESSION_FACTORIES: dict[str, SessionFactory] = {}


def register_session(kind: str, factory: SessionFactory) -> None:
    """Serve connections to listeners of ``kind`` with ``factory(ctx, kind, channel)`` (called at
    import by each session module; registering a kind again replaces its factory)."""
    if kind not in KINDS:
        raise ValueError(f"unknown listener kind {kind!r}; the kinds are {', '.join(KINDS)}")
    SESSION_FACTORIES[kind] = factory


def session_factories() -> dict[str, SessionFactory]:
    """The registered factories, once every session module of this build has been imported."""
    import hardmail.server.session_kinds  # noqa: F401  # registers at import: imported late, no cycle

    return SESSION_FACTORIES


def served_kinds() -> tuple[str, ...]:
    """The kinds some session serves, in :data:`KINDS` order."""
    factories = session_factories()
    return tuple(kind for kind in KINDS if kind in factories)


def unserved_listeners(config: Config) -> list[tuple[str, str]]:
    """(kind, address) of every configured listener whose kind no session of this build serves."""
    factories = session_factories()
    return [(kind, address) for kind in KINDS if kind not in factories for address in getattr(config.listen, kind)]


def warn_unserved(config: Config) -> None:
    for kind, address in unserved_listeners(config):
        log_event("server.listener_unserved", level="warning", kind=kind, address=address,
                  detail=f"this build has no {PROTOCOL_OF_KIND[kind].upper()} server: not listening")


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
    sessions: dict[asyncio.Task[None], Session | None] = field(default_factory=dict)

    async def start(self, sockets: list[ListeningSocket] | None = None) -> list[BoundAddress]:
        """Listen on every configured address, or on ``sockets`` bound earlier (worker processes)."""
        proxied_addresses = self.ctx.config.access.proxy_protocol.listeners
        if sockets is not None:
            for listening in sockets:
                await self._adopt(listening.kind, listening.sock, listening.address in proxied_addresses)
            return self.bound
        warn_unserved(self.ctx.config)
        for kind in served_kinds():
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
        channel = Channel(implicit_tls=kind in IMPLICIT_TLS_KINDS)
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
            session = session_factories()[kind](self.ctx, kind, channel)
            task = asyncio.current_task()
            if task in self.sessions:
                self.sessions[task] = session
            await session.run()
        except Exception as exc:  # a bug must cost one session, never the server
            # peer: a crash one client can cause again and again counts against its log rate limit
            log_event(f"{PROTOCOL_OF_KIND[kind]}.session_crash", level="error", peer=channel.peer()[0],
                      error=type(exc).__name__, detail=str(exc)[:300])
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
