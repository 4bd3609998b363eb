"""DKIM signing and verification (RFC 6376, Ed25519 by RFC 8463) with dkimpy, on our Resolver.

dkimpy is synchronous and asks DNS through a ``dnsfunc(name, timeout)`` callable: ours hands each
look-up back to the event loop (``asyncio.run_coroutine_threadsafe``) and remembers whether the key
was missing or the look-up failed, so a signature's result can be ``permerror`` or ``temperror``
rather than a bare ``fail``. Both signing and verifying run in the message-authentication thread
pool (:mod:`hardmail.msgauth.workers`). Verification checks at most MAX_SIGNATURES signatures of a
message, all within one deadline, so a hostile message costs a bounded number of look-ups.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import dkim  # type: ignore[import-untyped]

from hardmail.core.clock import Clock, SystemClock
from hardmail.mime.headers import HEAD_LIMIT, HeaderBlock, HeaderField, parse_header_block
from hardmail.msgauth import workers
from hardmail.msgauth.dns import DnsAnswer, Resolver

DkimResultCode = Literal["pass", "fail", "neutral", "policy", "temperror", "permerror"]
Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
LOOKUP_TIMEOUT = 10.0
MAX_SIGNATURES = 5  # RFC 6376 6.1: a verifier may limit the signatures it checks
VERIFY_DEADLINE = 20.0  # seconds for all the key look-ups of one message
# RFC 6376 8.15: each field is signed once per occurrence plus once more (oversigned), so that no
# instance of it (an absent one included) can be added without breaking the signature.
SIGNED_FIELDS = (
    "from", "sender", "reply-to", "subject", "date", "to", "cc", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition", "list-id",
    "list-unsubscribe", "list-unsubscribe-post", "list-help", "list-subscribe", "list-post", "list-owner",
    "list-archive",
)

# dkimpy picks each field an h= tag names by scanning the header fields (``select_headers``): its
# cost is the number of names in h= times the number of fields, quadratic in a hostile header
# block (2,000 names over 20,000 fields took 3.4 s). Above this much work, signatures are not
# given to dkimpy: they are permerror (DKIM) or a failed chain (ARC).
MAX_SELECTION_WORK = 1_000_000


def selection_work(block: HeaderBlock, signatures: Sequence[HeaderField]) -> int:
    """An upper bound of dkimpy's field-selection work for ``signatures`` (fields of ``block``):
    the names their h= tags can list (each ":" separates two) times the number of fields."""
    listed = sum(block.data.count(b":", f.colon + 1, f.end) + 1 for f in signatures)
    return listed * len(block.fields)


class MessageSource(Protocol):
    """A received message kept mostly on disk: its head (the header block) in memory, all of its
    bytes on demand. Only the worker threads of this package call :meth:`read`, so that at most
    ``[inbound] worker_threads`` whole messages are in memory at once."""

    @property
    def head(self) -> bytes: ...

    @property
    def size(self) -> int: ...

    def read(self) -> bytes: ...


Message = bytes | MessageSource


def size_of(message: Message) -> int:
    return len(message) if isinstance(message, bytes) else message.size


def head_of(message: Message) -> bytes:
    """The header block of ``message`` (for a bytes message: all of it, callers split)."""
    return message if isinstance(message, bytes) else message.head


def bytes_of(message: Message) -> bytes:
    """Every byte of ``message``: call from a worker thread only (it may read a file)."""
    return message if isinstance(message, bytes) else message.read()


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

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop, deadline: float | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        self._resolver = resolver
        self._loop = loop
        self._deadline = deadline  # on ``monotonic``'s scale; None: only LOOKUP_TIMEOUT per look-up
        self._monotonic = monotonic or SystemClock().monotonic
        self.last_status = "ok"

    def remaining(self) -> float:
        """Seconds left for look-ups (LOOKUP_TIMEOUT at most)."""
        if self._deadline is None:
            return LOOKUP_TIMEOUT
        return min(LOOKUP_TIMEOUT, self._deadline - self._monotonic())

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        answer = self._resolve(text.rstrip("."))
        self.last_status = answer.status
        texts = answer.texts()
        if answer.status == "tempfail":
            raise dkim.DnsTimeoutError(answer.detail or "temporary DNS failure")
        return texts[0].encode("utf-8") if texts else None

    def _resolve(self, name: str) -> DnsAnswer:
        wait = self.remaining()
        if wait <= 0:
            return DnsAnswer("tempfail", detail="verification deadline passed")
        future = asyncio.run_coroutine_threadsafe(self._resolver.resolve(name, "TXT"), self._loop)
        try:
            return future.result(wait)
        except TimeoutError:
            future.cancel()
            return DnsAnswer("tempfail", detail="timeout")


def signed_header_list(message: bytes) -> list[bytes]:
    """The h= list: each SIGNED_FIELDS name once per occurrence and once more (RFC 6376 8.15)."""
    present = Counter(f.name for f in parse_header_block(message[:HEAD_LIMIT]).fields)
    names: list[bytes] = []
    for name in SIGNED_FIELDS:
        names.extend([name.encode()] * (present[name] + 1))
    return names


def sign_message(source: Message, keys: Sequence[SigningKey]) -> bytes:
    """DKIM-Signature header lines (CRLF-terminated) for ``message``, one per key; relaxed/relaxed
    (call from a worker thread: it reads the message)."""
    message = bytes_of(source)
    headers = signed_header_list(message)
    lines = []
    for key in keys:
        signer = dkim.DKIM(message, linesep=b"\r\n")
        lines.append(signer.sign(key.selector.encode(), key.domain.encode(), key.private,
                                 signature_algorithm=key.algorithm.encode(),
                                 canonicalize=(b"relaxed", b"relaxed"), include_headers=headers))
    return b"".join(reversed(lines))  # the first key's signature ends up on top


async def sign(message: Message, keys: Sequence[SigningKey]) -> bytes:
    """:func:`sign_message` in the message-authentication thread pool."""
    async with workers.whole_message(size_of(message)):
        return await workers.run(sign_message, message, keys)


def _verify_one(verifier: dkim.DKIM, index: int, lookup: _TxtLookup) -> DkimVerification:
    verifier.signature_fields = {}
    lookup.last_status = "ok"
    if lookup.remaining() <= 0:
        return _deadline_passed(verifier, index)
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


def _unverified(verifier: dkim.DKIM, index: int, result: DkimResultCode, reason: str) -> DkimVerification:
    """A signature reported without being verified (its tags parsed for the report only)."""
    try:
        verifier.verify_headerprep(index)  # only parses the signature's tags, for the report
    except dkim.DKIMException:
        verifier.signature_fields = {}
    return _finding(verifier, result, reason)


def _deadline_passed(verifier: dkim.DKIM, index: int) -> DkimVerification:
    """A signature left unverified because the message's deadline passed: a temporary error."""
    return _unverified(verifier, index, "temperror", "verification deadline passed")


def _too_costly(verifier: dkim.DKIM, index: int) -> DkimVerification:
    """A signature not verified because checking it would be quadratic (MAX_SELECTION_WORK)."""
    return _unverified(verifier, index, "permerror", "signatures list too many header fields to verify")


def _not_verified(count: int, limit: int) -> DkimVerification:
    """RFC 6376 6.1: the signatures beyond the limit, reported together as not evaluated."""
    return DkimVerification("policy", "", "", "", f"{count} more signatures not verified (limit {limit})")


def verify_message(source: Message, resolver: Resolver, loop: asyncio.AbstractEventLoop,
                   limit: int = MAX_SIGNATURES, deadline: float | None = None,
                   monotonic: Callable[[], float] | None = None) -> list[DkimVerification]:
    """RFC 6376 6: the first ``limit`` DKIM-Signatures verified (call from a worker thread).

    ``deadline`` is a ``monotonic()`` time after which no key is looked up any more.
    """
    block = parse_header_block(head_of(source))
    signatures = block.named("dkim-signature")
    count = len(signatures)
    if count == 0:
        return []  # not even read from its file
    lookup = _TxtLookup(resolver, loop, deadline, monotonic)
    verifier = dkim.DKIM(bytes_of(source), minkey=1024)  # parsed once for every signature
    if selection_work(block, signatures[:limit]) > MAX_SELECTION_WORK:
        results = [_too_costly(verifier, index) for index in range(min(count, limit))]
    else:
        results = [_verify_one(verifier, index, lookup) for index in range(min(count, limit))]
    if count > limit:
        results.append(_not_verified(count - limit, limit))
    return results


async def verify(message: Message, resolver: Resolver, limit: int = MAX_SIGNATURES,
                 deadline: float = VERIFY_DEADLINE, clock: Clock | None = None) -> list[DkimVerification]:
    """:func:`verify_message` in the message-authentication pool, within ``deadline`` seconds from now
    (the time spent waiting for a free thread counts); an empty list when the message is not signed."""
    loop = asyncio.get_running_loop()
    monotonic = (clock or SystemClock()).monotonic
    if not _may_be_signed(head_of(message)):
        return []  # not read whole: no share of the budget
    async with workers.whole_message(size_of(message)):  # waiting here does not count in the deadline
        return await workers.run(verify_message, message, resolver, loop, limit, monotonic() + deadline, monotonic)


def txt_lookup(resolver: Resolver, loop: asyncio.AbstractEventLoop, deadline: float | None = None,
               monotonic: Callable[[], float] | None = None) -> _TxtLookup:
    """A dkimpy ``dnsfunc`` on our Resolver (for ARC, which shares the key look-up)."""
    return _TxtLookup(resolver, loop, deadline, monotonic)


def _may_be_signed(head: bytes) -> bool:
    """Whether the head may carry a DKIM-Signature, to reserve the whole-message budget on the
    event loop: a cheap search that may say yes too often (never no wrongly); the worker decides
    with the parser."""
    return b"dkim-signature" in head.lower()
