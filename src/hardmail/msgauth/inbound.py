"""Inbound message checks run at the end of DATA: DKIM, ARC and DMARC on top of the SPF results
found at MAIL FROM, and the trace fields that record them."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from hardmail.mime.addresses import author_of
from hardmail.mime.headers import HEAD_LIMIT
from hardmail.msgauth import arc, dkim, dmarc, workers
from hardmail.msgauth.authres import Findings, authentication_results, received_spf
from hardmail.msgauth.dns import Resolver
from hardmail.msgauth.spf import SpfResult


@dataclass(frozen=True, slots=True)
class InboundReport:
    findings: Findings
    headers: bytes  # Authentication-Results and Received-SPF, CRLF-terminated


async def _dmarc_result(resolver: Resolver, message: bytes, spf: SpfResult | None,
                        signatures: list[dkim.DkimVerification]) -> dmarc.DmarcResult:
    found = await workers.run(author_of, message[:HEAD_LIMIT])  # CPU-bound on hostile input
    return await dmarc.evaluate_author(resolver, found, spf, signatures, sample=random.random())


async def check_message(resolver: Resolver, message: dkim.Message, spf_helo: SpfResult | None,
                        spf_mailfrom: SpfResult | None, max_signatures: int = dkim.MAX_SIGNATURES,
                        deadline: float = dkim.VERIFY_DEADLINE) -> Findings:
    """DKIM (the first ``max_signatures`` signatures), ARC and DMARC for one received message; the
    key look-ups of DKIM and ARC each end ``deadline`` seconds from now."""
    signatures, chain = await asyncio.gather(dkim.verify(message, resolver, max_signatures, deadline),
                                             arc.verify(message, resolver, deadline))
    spf_for_dmarc = spf_mailfrom if spf_mailfrom is not None and spf_mailfrom.identity == "mailfrom" else None
    verdict = await _dmarc_result(resolver, dkim.head_of(message), spf_for_dmarc, signatures)
    return Findings(spf_helo, spf_mailfrom, tuple(signatures), chain, verdict)


def report(findings: Findings, authserv_id: str, client_ip: str, sender: str, helo: str) -> InboundReport:
    """The trace fields to add. (Incoming fields that claim to be ours are removed from every
    message by the session: :func:`hardmail.msgauth.authres.verdict_fields`.)"""
    headers = authentication_results(authserv_id, findings, sender, helo)
    deciding = findings.spf_mailfrom or findings.spf_helo
    if deciding is not None:
        headers += received_spf(deciding, authserv_id, client_ip, sender, helo)
    return InboundReport(findings, headers)
