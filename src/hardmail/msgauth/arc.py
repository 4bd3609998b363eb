"""ARC chain verification (RFC 8617) with dkimpy, its key look-ups on our Resolver, in the
message-authentication thread pool and within one deadline per message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import dkim  # type: ignore[import-untyped]

from hardmail.core.clock import Clock, SystemClock
from hardmail.mime.headers import parse_header_block
from hardmail.msgauth import workers
from hardmail.msgauth.dkim import (
    MAX_SELECTION_WORK,
    VERIFY_DEADLINE,
    Message,
    bytes_of,
    head_of,
    selection_work,
    size_of,
    txt_lookup,
)
from hardmail.msgauth.dns import Resolver

ArcResultCode = Literal["pass", "fail", "none"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: ArcResultCode
    reason: str = ""
    instances: int = 0


def verify_chain(message: Message, resolver: Resolver, loop: asyncio.AbstractEventLoop, deadline: float | None = None,
                 monotonic: Callable[[], float] | None = None) -> ArcResult:
    """RFC 8617 5.2: the chain validation status (call from a worker thread); no key look-up after
    ``deadline`` (a ``monotonic()`` time)."""
    block = parse_header_block(head_of(message))
    if "arc-seal" not in block.names():
        return ArcResult("none", "message is not ARC signed")  # not even read from its file
    if selection_work(block, block.named("arc-message-signature")) > MAX_SELECTION_WORK:  # quadratic in dkimpy
        return ArcResult("fail", "ARC-Message-Signature lists too many header fields to verify")
    lookup = txt_lookup(resolver, loop, deadline, monotonic)
    status, results, reason = dkim.arc_verify(bytes_of(message), dnsfunc=lookup)
    code = status.decode() if isinstance(status, bytes) else "fail"  # None: the chain was already failed
    return ArcResult(code if code in ("pass", "fail", "none") else "fail", str(reason)[:200], len(results))  # type: ignore[arg-type]


async def verify(message: Message, resolver: Resolver, deadline: float = VERIFY_DEADLINE,
                 clock: Clock | None = None) -> ArcResult:
    """:func:`verify_chain` in the message-authentication pool, within ``deadline`` seconds from now."""
    loop = asyncio.get_running_loop()
    monotonic = (clock or SystemClock()).monotonic
    async with workers.whole_message(size_of(message) if _sealed(message) else 0):
        return await workers.run(verify_chain, message, resolver, loop, monotonic() + deadline, monotonic)


def _sealed(message: Message) -> bool:
    """Whether the head may carry an ARC-Seal, to reserve the whole-message budget: a cheap search
    that may say yes too often (never no wrongly); :func:`verify_chain` decides with the parser."""
    return b"arc-seal:" in head_of(message).split(b"\r\n\r\n", 1)[0].lower()
