"""Reply batching of the SMTP session: a pipelined group is answered in one write, and every
held reply is written before the session reads again (RFC 2920 3.1)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hardmail.config.schema import Config
from hardmail.server.sessions import SessionRegistry
from hardmail.server.smtp_session import SmtpSession


class RecordingChannel:
    """A Channel stand-in: hands out scripted reads and records every write, in order."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.writes: list[bytes] = []
        self.writes_seen_by_read: list[int] = []
        self.closing = False
        self.must_drain = False

    def peer(self) -> tuple[str, int]:
        return ("192.0.2.1", 40000)

    async def read(self) -> bytes:
        self.writes_seen_by_read.append(len(self.writes))
        return self.reads.pop(0) if self.reads else b""

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def write_buffer_size(self) -> int:
        return 0

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closing = True

    def interrupt(self, exc: BaseException) -> None:
        raise AssertionError("no wait of these sessions times out")


def _session(channel: RecordingChannel) -> SmtpSession:
    ctx: Any = SimpleNamespace(config=Config(), hooks=[], store=None, login_store=None, hash_pool=None,
                               sessions=SessionRegistry())
    return SmtpSession(ctx, "smtp", channel)  # type: ignore[arg-type]


async def test_pipelined_commands_are_answered_in_one_write() -> None:
    channel = RecordingChannel([b"EHLO client.example\r\nNOOP\r\nNOOP\r\nRSET\r\n", b"QUIT\r\n"])
    await _session(channel).run()
    greeting, group, bye = channel.writes
    assert greeting.startswith(b"220 ")
    assert group.startswith(b"250-") and group.count(b"\r\n250 2.0.0") == 3
    assert bye.startswith(b"221 ")


async def test_every_reply_is_written_before_the_next_read() -> None:
    channel = RecordingChannel([b"EHLO client.example\r\nNOOP\r\n", b"NOOP\r\n"])
    await _session(channel).run()
    assert channel.writes_seen_by_read == [1, 2, 3]  # greeting, then each group before reading on
    assert channel.writes[-1].startswith(b"250 2.0.0")
