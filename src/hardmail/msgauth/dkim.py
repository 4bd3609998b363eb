"""DKIM signing and verification (RFC 6376, Ed25519 by RFC 8463) with dkimpy, on our Resolver.

dkimpy is synchronous and asks DNS through a ``dnsfunc(name, timeout)`` callable: ours hands each
look-up back to the event loop (``asyncio.run_coroutine_threadsafe``) and remembers whether the key
was missing or the look-up failed, so a signature's result can be ``permerror`` or ``temperror``
rather than a bare ``fail``. Both signing and verifying run in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import dkim  # type: ignore[import-untyped]

from hardmail.msgauth.dns import DnsAnswer, Resolver

DkimResultCode = Literal["pass", "fail", "neutral", "temperror", "permerror"]
Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
LOOKUP_TIMEOUT = 10.0
# Signed once per occurrence; an absent field is still signed once so that it cannot be added.
SIGNED_FIELDS = (
    "from", "sender", "reply-to", "subject", "date", "to", "cc", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition", "list-id",
    "list-unsubscribe", "list-unsubscribe-post",
)
OVERSIGNED_FIELDS = ("from", "reply-to", "subject", "date", "to", "cc")  # RFC 6376 8.15: one extra h= entry
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key ready to sign: ``private`` is PEM (RSA) or the base64 seed (Ed25519)."""

    domain: str
    selector: str
    algorithm: Algorithm
    private: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DkimVerification:
    result: DkimResultCode
    domain: str  # d=
    selector: str  # s=
    algorithm: str  # a=
    reason: str = ""
    header_b: str = ""  # first 8 characters of b=, to tell signatures apart (RFC 6008)


class _TxtLookup:
    """dkimpy's ``dnsfunc``: TXT look-ups through our Resolver from a worker thread."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self._resolver = resolver
        self._loop = loop
        self.last_status = "ok"

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self._resolve(text.rstrip("."))
        self.last_status = answer.status
        texts = answer.texts()
        if answer.status == "tempfail":
            raise dkim.DnsTimeoutError(answer.detail or "temporary DNS failure")
        return texts[0].encode("utf-8") if texts else None

    def _resolve(self, name: str) -> DnsAnswer:
        future = asyncio.run_coroutine_threadsafe(self._resolver.resolve(name, "TXT"), self._loop)
        try:
            return future.result(LOOKUP_TIMEOUT)
        except TimeoutError:
            future.cancel()
            return DnsAnswer("tempfail", detail="timeout")


def signed_header_list(message: bytes) -> list[bytes]:
    """The h= list: every present SIGNED_FIELDS occurrence, and OVERSIGNED_FIELDS once more."""
    head = message.split(b"\r\n\r\n", 1)[0]
    present = [m.group(1).lower() for m in _FIELD_NAME.finditer(head)]
    names: list[bytes] = []
    for name in (f.encode() for f in SIGNED_FIELDS):
        names.extend([name] * present.count(name))
    names.extend(f.encode() for f in OVERSIGNED_FIELDS)
    return names


def sign_message(message: bytes, keys: Sequence[SigningKey]) -> bytes:
    """DKIM-Signature header lines (CRLF-terminated) for ``message``, one per key; relaxed/relaxed."""
    headers = signed_header_list(message)
    lines = []
    for key in keys:
        signer = dkim.DKIM(message, linesep=b"\r\n")
        lines.append(signer.sign(key.selector.encode(), key.domain.encode(), key.private,
                                 signature_algorithm=key.algorithm.encode(),
                                 canonicalize=(b"relaxed", b"relaxed"), include_headers=headers))
    return b"".join(reversed(lines))  # the first key's signature ends up on top


async def sign(message: bytes, keys: Sequence[SigningKey]) -> bytes:
    """:func:`sign_message` off the event loop."""
    return await asyncio.to_thread(sign_message, message, keys)


def _signature_count(message: bytes) -> int:
    head = message.split(b"\r\n\r\n", 1)[0]
    return sum(1 for m in _FIELD_NAME.finditer(head) if m.group(1).lower() == b"dkim-signature")


def _verify_one(message: bytes, index: int, lookup: _TxtLookup) -> DkimVerification:
    verifier = dkim.DKIM(message, minkey=1024)
    lookup.last_status = "ok"
    try:
        valid = verifier.verify(idx=index, dnsfunc=lookup)
    except dkim.ValidationError as exc:
        return _finding(verifier, "fail", str(exc))
    except dkim.DKIMException as exc:
        return _finding(verifier, "permerror", str(exc))
    if valid:
        return _finding(verifier, "pass")
    if lookup.last_status == "tempfail":
        return _finding(verifier, "temperror", "key look-up failed")
    if lookup.last_status != "ok":
        return _finding(verifier, "permerror", "no key published for the selector")  # RFC 6376 6.1.2
    return _finding(verifier, "fail", "signature did not verify")


def _finding(verifier: dkim.DKIM, result: DkimResultCode, reason: str = "") -> DkimVerification:
    fields = verifier.signature_fields or {}

    def text(tag: bytes) -> str:
        value = fields.get(tag, b"")
        return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)

    signature = re.sub(r"\s+", "", text(b"b"))
    return DkimVerification(result, text(b"d").lower(), text(b"s"), text(b"a"), reason[:200], signature[:8])


def verify_message(message: bytes, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> list[DkimVerification]:
    """RFC 6376 6: every DKIM-Signature of ``message`` verified (call from a worker thread)."""
    lookup = _TxtLookup(resolver, loop)
    return [_verify_one(message, index, lookup) for index in range(_signature_count(message))]


async def verify(message: bytes, resolver: Resolver) -> list[DkimVerification]:
    """:func:`verify_message` off the event loop; an empty list when the message is not signed."""
    loop = asyncio.get_running_loop()
    return await asyncio.to_thread(verify_message, message, resolver, loop)


def txt_lookup(resolver: Resolver, loop: asyncio.AbstractEventLoop) -> _TxtLookup:
    """A dkimpy ``dnsfunc`` on our Resolver (for ARC, which shares the key look-up)."""
    return _TxtLookup(resolver, loop)
