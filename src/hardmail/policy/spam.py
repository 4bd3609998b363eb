"""Spam scoring: each finding of a check adds its configured score; thresholds decide.

Pure: the facts (DNSBL answers, HELO look-ups, reverse DNS, SPF/DKIM/DMARC results) are gathered by
the caller, the weights come from the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from hardmail.core.replies import Reply

SPAM_REFUSED = Reply(554, "5.7.1", "Message refused: it looks like spam to this server's checks")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?$")
_ADDRESS_LITERAL = re.compile(r"^\[(IPv6:[0-9a-f:.]+|[0-9.]+)\]$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # "dnsbl", "helo_syntax", "helo_unresolvable", "helo_ours", "no_fcrdns", ...
    detail: str
    score: int


@dataclass(frozen=True, slots=True)
class SpamWeights:
    helo_syntax: int = 2
    helo_unresolvable: int = 1
    helo_ours: int = 5
    no_fcrdns: int = 1
    sender_domain_no_mx: int = 3
    spf_fail: int = 3
    spf_softfail: int = 1
    dkim_fail: int = 2
    dmarc_fail: int = 3


Action = Literal["accept", "mark", "reject"]


def total(findings: Iterable[Finding]) -> int:
    return sum(f.score for f in findings)


def action(score: int, mark_threshold: int, reject_threshold: int) -> Action:
    """``reject`` at or above the reject threshold, ``mark`` at or above the mark one (0 turns either off)."""
    if reject_threshold > 0 and score >= reject_threshold:
        return "reject"
    if mark_threshold > 0 and score >= mark_threshold:
        return "mark"
    return "accept"


def helo_is_well_formed(helo: str) -> bool:
    """RFC 5321 4.1.1.1: a fully-qualified domain name or an address literal."""
    if _ADDRESS_LITERAL.match(helo.strip()):
        return True
    labels = helo.strip().rstrip(".").lower().split(".")
    return (len(labels) >= 2 and len(".".join(labels)) <= 253 and not labels[-1].isdigit()
            and all(_LABEL.match(label) for label in labels))


def helo_findings(helo: str, resolves: bool, our_names: Sequence[str], weights: SpamWeights) -> list[Finding]:
    """HELO checks: syntax, that it resolves, and that it is not one of our own names."""
    findings = []
    name = helo.strip().rstrip(".").lower()
    if name in {n.lower().rstrip(".") for n in our_names if n}:
        findings.append(Finding("helo_ours", f"HELO {helo[:100]} is our own name", weights.helo_ours))
    if not helo_is_well_formed(helo):
        findings.append(Finding("helo_syntax", f"HELO {helo[:100]} is not a domain name", weights.helo_syntax))
    elif not _ADDRESS_LITERAL.match(helo.strip()) and not resolves:
        findings.append(Finding("helo_unresolvable", f"HELO {helo[:100]} does not resolve", weights.helo_unresolvable))
    return findings


def auth_findings(spf: str | None, dkim: Sequence[str], dmarc: str | None, weights: SpamWeights) -> list[Finding]:
    """Scores of authentication failures (results as RFC 8601 words)."""
    findings = []
    if spf == "fail":
        findings.append(Finding("spf_fail", "SPF fail", weights.spf_fail))
    elif spf == "softfail":
        findings.append(Finding("spf_softfail", "SPF softfail", weights.spf_softfail))
    if dkim and "pass" not in dkim and "fail" in dkim:
        findings.append(Finding("dkim_fail", "no DKIM signature verified", weights.dkim_fail))
    if dmarc == "fail":
        findings.append(Finding("dmarc_fail", "DMARC fail", weights.dmarc_fail))
    return findings


def status_headers(score: int, verdict: Action, findings: Sequence[Finding], mark_threshold: int) -> bytes:
    """``X-Spam-Status`` and ``X-Spam-Score`` (SpamAssassin's customary form)."""
    flag = "Yes" if verdict != "accept" else "No"
    tests = ",".join(sorted({f.check for f in findings})) or "none"
    return (f"X-Spam-Status: {flag}, score={score} required={mark_threshold} tests={tests}\r\n"
            f"X-Spam-Score: {score}\r\n").encode()
