"""Inbound message checks run at the end of DATA: DKIM, ARC and DMARC on top of the SPF results
found at MAIL FROM, and the trace fields that record them."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

from hardmail.msgauth import arc, dkim, dmarc
from hardmail.msgauth.authres import Findings, authentication_results, forged_authres_indexes, received_spf
from hardmail.msgauth.dns import Resolver
from hardmail.msgauth.spf import SpfResult


@dataclass(frozen=True, slots=True)
class InboundReport:
    findings: Findings
    headers: bytes  # Authentication-Results and Received-SPF, CRLF-terminated
    drop_headers: tuple[int, ...]  # incoming Authentication-Results fields claiming our name


async def _dmarc_result(resolver: Resolver, message: bytes, spf: SpfResult | None,
                        signatures: list[dkim.DkimVerification]) -> dmarc.DmarcResult:
    from_domain, why = dmarc.header_from_domain(message)
    if from_domain is None:
        return dmarc.DmarcResult("permerror", "", reason=why)
    record, record_domain, status = await dmarc.discover(resolver, from_domain)
    if status == "tempfail":
        return dmarc.DmarcResult("temperror", from_domain, reason="DMARC record look-up failed")
    return dmarc.evaluate(from_domain, record, record_domain, spf, signatures, sample=random.random())


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


def report(findings: Findings, message: bytes, authserv_id: str, client_ip: str, sender: str,
           helo: str, our_names: Sequence[str] = ()) -> InboundReport:
    """The trace fields to add and the forged ones to remove: incoming Authentication-Results that
    claim ``authserv_id`` or any of ``our_names`` (RFC 8601 5)."""
    headers = authentication_results(authserv_id, findings, sender, helo)
    deciding = findings.spf_mailfrom or findings.spf_helo
    if deciding is not None:
        headers += received_spf(deciding, authserv_id, client_ip, sender, helo)
    head = message.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    return InboundReport(findings, headers, forged_authres_indexes(head, [authserv_id, *our_names]))
