"""ARC chain verification (RFC 8617) with dkimpy, its key look-ups on our Resolver, off the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import dkim  # type: ignore[import-untyped]

from hardmail.msgauth.dkim import txt_lookup
from hardmail.msgauth.dns import Resolver

ArcResultCode = Literal["pass", "fail", "none"]


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: ArcResultCode
    reason: str = ""
    instances: int = 0


def verify_chain(message: bytes, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> ArcResult:
    """RFC 8617 5.2: the chain validation status (call from a worker thread)."""
    if b"arc-seal:" not in message.split(b"\r\n\r\n", 1)[0].lower():
        return ArcResult("none", "message is not ARC signed")
    status, results, reason = dkim.arc_verify(message, dnsfunc=txt_lookup(resolver, loop))
    code = status.decode() if isinstance(status, bytes) else "fail"  # None: the chain was already failed
    return ArcResult(code if code in ("pass", "fail", "none") else "fail", str(reason)[:200], len(results))  # type: ignore[arg-type]


async def verify(message: bytes, resolver: Resolver) -> ArcResult:
    loop = asyncio.get_running_loop()
    return await asyncio.to_thread(verify_chain, message, resolver, loop)
