"""The DKIM signing service: picks the keys of the From domain, signs in the message-authentication
thread pool (never asyncio's default one), and promotes a rotated key once its DNS records are seen
(old keys retire after the grace period)."""

from __future__ import annotations

from pathlib import Path

from hardmail.core.address import AddressError
from hardmail.core.clock import Clock
from hardmail.mime.addresses import author_of
from hardmail.mime.headers import HEAD_LIMIT
from hardmail.msgauth import workers
from hardmail.msgauth.dkim import Message, SigningKey, head_of, sign_message, size_of
from hardmail.msgauth.dkim_keys import DkimKeyError, DomainKeys, Generation
from hardmail.msgauth.dmarc import organizational_domain
from hardmail.msgauth.dns import Resolver
from hardmail.ops.log import log_event


async def records_published(resolver: Resolver, keys: DomainKeys, generation: Generation) -> bool:
    """Whether every public key of ``generation`` is in DNS as its selector's TXT record."""
    for record in await workers.run(keys.public_records, generation):
        answer = await resolver.resolve(record.name(keys.domain), "TXT")
        wanted = record.txt.rpartition("p=")[2]
        if not any(wanted in text.replace(" ", "") for text in answer.texts()):
            return False
    return True


class DkimSigner:
    def __init__(self, data_dir: Path, resolver: Resolver, clock: Clock, grace_seconds: float,
                 check_interval: float) -> None:
        self._data_dir = data_dir
        self._resolver = resolver
        self._clock = clock
        self._grace = grace_seconds
        self._interval = check_interval
        self._last_check: dict[str, float] = {}

    def _keys_for(self, from_domain: str) -> DomainKeys | None:
        for domain in dict.fromkeys([from_domain, organizational_domain(from_domain)]):
            try:
                keys = DomainKeys(self._data_dir, domain)
            except AddressError:
                return None
            if keys.directory.is_dir():
                return keys
        return None

    async def _promote_when_published(self, keys: DomainKeys) -> None:
        now = self._clock.monotonic()
        if now - self._last_check.get(keys.domain, -self._interval) < self._interval:
            return
        self._last_check[keys.domain] = now
        pending = next((g for g in keys.generations() if g.state == "pending"), None)
        if pending is not None and await records_published(self._resolver, keys, pending):
            keys.promote(self._clock.now(), self._grace)
            log_event("dkim.rotate", domain=keys.domain, active=pending.name)
        for name in keys.prune(self._clock.now()):
            log_event("dkim.retire", domain=keys.domain, generation=name)

    async def signing_keys(self, message: bytes) -> list[SigningKey]:
        from_domain = (await workers.run(author_of, message[:HEAD_LIMIT])).domain
        keys = self._keys_for(from_domain) if from_domain else None
        if keys is None:
            return []
        try:
            await self._promote_when_published(keys)
            return await workers.run(keys.signing_keys)
        except DkimKeyError as exc:
            log_event("dkim.key_error", level="error", domain=keys.domain, detail=str(exc))
            return []

    async def sign(self, message: Message) -> tuple[bytes, list[SigningKey]]:
        """The DKIM-Signature fields for ``message`` (empty when its From domain has no keys); a
        file-backed message is read in the worker thread that signs it."""
        keys = await self.signing_keys(head_of(message))
        if not keys:
            return b"", []
        async with workers.whole_message(size_of(message)):
            return await workers.run(sign_message, message, keys), keys
