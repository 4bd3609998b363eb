"""SPF evaluation (RFC 7208) of the HELO and MAIL FROM identities, on our injected Resolver.

The record evaluation is pyspf's (the reference implementation of the OpenSPF test suite): a
subclass of ``spf.query`` replaces its DNS method so that every look-up goes through our
:class:`~hardmail.msgauth.dns.Resolver`. pyspf is synchronous, so an evaluation runs in the
message-authentication thread pool (:mod:`hardmail.msgauth.workers`) and each look-up is handed back
to the event loop with ``asyncio.run_coroutine_threadsafe``, all within one deadline per evaluation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import spf  # type: ignore[import-untyped]

from hardmail.msgauth import workers
from hardmail.msgauth.dns import DnsAnswer, Resolver

SpfResultCode = Literal["pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"]
LOOKUP_TIMEOUT = 20.0  # RFC 7208 4.6.4: at least 20 seconds for the whole evaluation is suggested
EVALUATION_DEADLINE = LOOKUP_TIMEOUT  # seconds for every look-up of one evaluation together


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: SpfResultCode
    identity: Literal["helo", "mailfrom"]
    domain: str  # the domain whose policy was checked (empty when there was none)
    explanation: str = ""
    mechanism: str = ""


def _convert(rdata: Any, qtype: str) -> Any:
    """One dnspython rdata in the form pyspf's own dnspython driver gives it."""
    if qtype in ("A", "AAAA"):
        return rdata.address
    if qtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(True))
    if qtype == "PTR":
        return rdata.target.to_text(True)
    if qtype in ("TXT", "SPF"):
        return tuple(rdata.strings)
    return rdata.to_text()


def _valid_name(name: str) -> bool:
    return all(0 < len(label) < 64 for label in name.split("."))


class ResolverQuery(spf.query):  # type: ignore[misc]
    """``spf.query`` whose DNS goes through our Resolver on ``loop`` (called from a worker thread)."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resolver = resolver
        self._loop = loop
        self._deadline = time.monotonic() + EVALUATION_DEADLINE

    def _lookup(self, name: str, qtype: str) -> DnsAnswer:
        wait = min(LOOKUP_TIMEOUT, self._deadline - time.monotonic())
        if wait <= 0:
            return DnsAnswer("tempfail", detail="evaluation deadline passed")
        future = asyncio.run_coroutine_threadsafe(self._resolver.resolve(name, qtype), self._loop)
        try:
            return future.result(wait)
        except TimeoutError:
            future.cancel()
            return DnsAnswer("tempfail", detail="timeout")

    def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        """Cached look-up; CNAMEs are followed by the resolver; void answers counted (RFC 7208 4.6.4)."""
        if not name:
            raise spf.PermError("empty domain name")
        name = str(name).rstrip(".").lower()
        if not _valid_name(name):
            return []  # RFC 7208 4.3: a malformed name has no records
        key = (name, qtype)
        if key not in self.cache:
            answer = self._lookup(name, qtype)
            if answer.status == "tempfail":
                raise spf.TempError(f"DNS {answer.detail or 'temporary failure'} for {name} {qtype}")
            self.cache[key] = [_convert(r, qtype) for r in answer.records]
        result = list(self.cache[key])
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result

    def validated_ptrs(self) -> list[str]:
        """RFC 7208 5.5: at most 10 PTR names; a DNS error on one name's look-up skips that name."""
        names = self.dns_ptr(self.i)[: spf.MAX_PTR]
        return [name for name in names if self._address_matches(name)]

    def _address_matches(self, name: str) -> bool:
        try:
            return bool(self.cidrmatch(self.dns_a(name, self.A), self.cidrmax))
        except spf.TempError:
            return False


def _evaluate(resolver: Resolver, loop: asyncio.AbstractEventLoop, ip: str, sender: str, helo: str,
              receiver: str, default_explanation: str | None) -> SpfResult:
    query = ResolverQuery(resolver, loop, i=ip, s=sender, h=helo, receiver=receiver or None)
    if default_explanation is not None:
        query.set_default_explanation(default_explanation)
    result, _code, explanation = query.check()
    identity: Literal["helo", "mailfrom"] = "mailfrom" if query.ident == "mailfrom" else "helo"
    mechanism = query.mechanism if isinstance(query.mechanism, str) else ""
    return SpfResult(result, identity, query.d or "", explanation, mechanism)


async def check_host(resolver: Resolver, ip: str, sender: str, helo: str, receiver: str = "",
                     default_explanation: str | None = None) -> SpfResult:
    """RFC 7208 4: the SPF result for ``sender`` (empty: the HELO identity, RFC 7208 2.3) from ``ip``."""
    loop = asyncio.get_running_loop()
    return await workers.run(_evaluate, resolver, loop, ip, sender, helo, receiver, default_explanation)


async def check_helo(resolver: Resolver, ip: str, helo: str, receiver: str = "") -> SpfResult:
    """RFC 7208 2.3: the HELO identity checked on its own."""
    return await check_host(resolver, ip, "", helo, receiver)


async def check_mail_from(resolver: Resolver, ip: str, sender: str, helo: str, receiver: str = "") -> SpfResult:
    """RFC 7208 2.4: MAIL FROM, or postmaster@HELO for the null reverse-path."""
    return await check_host(resolver, ip, sender, helo, receiver)
