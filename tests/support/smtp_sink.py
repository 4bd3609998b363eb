"""Receiving SMTP servers for outbound delivery tests: aiosmtpd on a loopback address, recording mail.

Several sinks can share one port on different 127.0.0.x addresses (the outbound port is one
setting), see :func:`free_port_on`. Behaviour is steered per test with ``rcpt_reply`` (a reply
line for a recipient, or None to accept) and ``on_data`` (an async hook that may wait or return
a reply line). Nothing here sleeps.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int
    tls: bool


def free_port_on(*hosts: str) -> int:
    """A TCP port that is free on every one of ``hosts``."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        if all(_free(host, port) for host in hosts):
            return port
    raise RuntimeError("no common free port")


def _free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Sink:
    host: str
    port: int
    tls_context: ssl.SSLContext | None = None
    rcpt_reply: Callable[[str], str | None] = lambda _address: None
    on_data: Callable[[Received], Awaitable[str | None]] | None = None
    received: list[Received] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    got_mail: threading.Event = field(default_factory=threading.Event)
    controller: Controller | None = None

    def __enter__(self) -> Sink:
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": True}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        self.controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.controller is not None
        self.controller.stop()

    def subjects(self) -> list[str]:
        found = []
        for message in self.received:
            for line in message.data.split(b"\r\n"):
                if line.startswith(b"Subject: "):
                    found.append(line[9:].decode())
        return found


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        reply = self.sink.rcpt_reply(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink.sessions.add(id(session))
        message = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content),
                           id(session), session.ssl is not None)
        if self.sink.on_data is not None:
            reply = await self.sink.on_data(message)
            if reply is not None:
                return reply
        self.sink.received.append(message)
        self.sink.got_mail.set()
        return "250 2.0.0 accepted"
