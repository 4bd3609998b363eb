"""DMARC (RFC 7489): policy discovery, identifier alignment and the result for one message.

The organizational domain comes from the public suffix list bundled with ``publicsuffixlist``
(RFC 7489 3.2). Evaluation is a pure function of the findings (SPF, DKIM) and the record; only
:func:`discover` does DNS, through the injected Resolver.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from publicsuffixlist import PublicSuffixList  # type: ignore[import-untyped]

from hardmail.mime.addresses import MAX_AUTHOR_DOMAINS, Author
from hardmail.msgauth.dkim import DkimVerification
from hardmail.msgauth.dns import Resolver
from hardmail.msgauth.spf import SpfResult

Policy = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]
DmarcResultCode = Literal["pass", "fail", "none", "temperror", "permerror"]


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: Policy
    subdomain_policy: Policy
    adkim: Alignment = "r"
    aspf: Alignment = "r"
    pct: int = 100
    rua: str = field(default="", compare=False)  # where aggregate reports go (RFC 7489 6.3), as written


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: DmarcResultCode
    from_domain: str
    policy: Policy = "none"  # the policy that applies to this message (RFC 7489 6.6.4 with pct)
    record_domain: str = ""  # where the record was found
    reason: str = ""
    no_author: bool = False  # From: names no author domain (or too many): the message is refused


@lru_cache(maxsize=1)
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the registrable domain (public suffix plus one label), or ``domain`` itself."""
    name = domain.rstrip(".").lower()
    found = _suffix_list().privatesuffix(name)
    return str(found) if found else name


def aligned(identifier: str, from_domain: str, mode: Alignment) -> bool:
    """RFC 7489 3.1: strict means equal names, relaxed means equal organizational domains."""
    left, right = identifier.rstrip(".").lower(), from_domain.rstrip(".").lower()
    if not left or not right:
        return False
    if mode == "s":
        return left == right
    return organizational_domain(left) == organizational_domain(right)


def _policy(value: str | None) -> Policy | None:
    return value if value in ("none", "quarantine", "reject") else None  # type: ignore[return-value]


def parse_record(text: str) -> DmarcRecord | None:
    """RFC 7489 6.3: the record's tags, or None when it is not a valid DMARC record."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    policy = _policy(tags.get("p", "").lower())
    if policy is None:  # RFC 7489 6.6.3: an invalid p= makes the record unusable (unless rua is set)
        return None
    pct = tags.get("pct", "100")
    return DmarcRecord(
        policy=policy,
        subdomain_policy=_policy(tags.get("sp", "").lower()) or policy,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=min(100, max(0, int(pct))) if pct.isdigit() else 100,
        rua=tags.get("rua", ""),
    )


async def _records_at(resolver: Resolver, name: str) -> tuple[str, list[str]]:
    answer = await resolver.resolve(f"_dmarc.{name}", "TXT")
    return answer.status, [t for t in answer.texts() if t.lower().startswith("v=dmarc1")]


async def discover(resolver: Resolver, from_domain: str) -> tuple[DmarcRecord | None, str, str]:
    """RFC 7489 6.6.3: the record of the From domain, else of its organizational domain.

    Returns (record, domain where found, status) with status ``ok``, ``none`` or ``tempfail``.
    """
    candidates = dict.fromkeys([from_domain, organizational_domain(from_domain)])
    for name in candidates:
        status, texts = await _records_at(resolver, name)
        if status == "tempfail":
            return None, name, "tempfail"
        if len(texts) == 1:
            record = parse_record(texts[0])
            if record is not None:
                return record, name, "ok"
    return None, "", "none"


def _identifier_aligned(record: DmarcRecord, from_domain: str, spf: SpfResult | None,
                        dkim: Sequence[DkimVerification]) -> str | None:
    """Which mechanism passed aligned ("dkim" or "spf"), or None (RFC 7489 4.2)."""
    if any(r.result == "pass" and aligned(r.domain, from_domain, record.adkim) for r in dkim):
        return "dkim"
    if spf is not None and spf.identity == "mailfrom" and spf.result == "pass" \
            and aligned(spf.domain, from_domain, record.aspf):
        return "spf"
    return None


def _aligned_temperror(record: DmarcRecord, from_domain: str, spf: SpfResult | None,
                       dkim: Sequence[DkimVerification]) -> str | None:
    """Which mechanism could have passed aligned but had a temporary error (RFC 7489 6.6.2)."""
    if any(r.result == "temperror" and aligned(r.domain, from_domain, record.adkim) for r in dkim):
        return "dkim"
    if spf is not None and spf.identity == "mailfrom" and spf.result == "temperror" \
            and aligned(spf.domain, from_domain, record.aspf):
        return "spf"
    return None


def _applied_policy(record: DmarcRecord, record_domain: str, from_domain: str, sample: float) -> Policy:
    """RFC 7489 6.6.3 and 6.6.4: p= or sp=, one step weaker when the message is not sampled by pct=."""
    policy = record.policy if record_domain == from_domain.lower() else record.subdomain_policy
    if sample * 100 >= record.pct:  # not sampled: the next weaker policy applies
        policy = {"reject": "quarantine", "quarantine": "none", "none": "none"}[policy]  # type: ignore[assignment]
    return policy


def evaluate(from_domain: str, record: DmarcRecord | None, record_domain: str, spf: SpfResult | None,
             dkim: Sequence[DkimVerification], sample: float = 0.0) -> DmarcResult:
    """The DMARC result; ``sample`` in [0, 1) decides pct= sampling (RFC 7489 6.6.4).

    Without an aligned pass, a temporary error of a result that could have aligned makes the
    result ``temperror`` rather than ``fail`` (RFC 7489 6.6.2): the message may pass when retried.
    """
    if record is None:
        return DmarcResult("none", from_domain, reason="no DMARC record")
    passed_by = _identifier_aligned(record, from_domain, spf, dkim)
    if passed_by is not None:
        return DmarcResult("pass", from_domain, "none", record_domain, f"aligned {passed_by} pass")
    policy = _applied_policy(record, record_domain, from_domain, sample)
    undecided = _aligned_temperror(record, from_domain, spf, dkim)
    if undecided is not None:
        return DmarcResult("temperror", from_domain, policy, record_domain, f"aligned {undecided} temperror")
    return DmarcResult("fail", from_domain, policy, record_domain, "no aligned SPF or DKIM pass")


_STRICTNESS = {"reject": 0, "quarantine": 1, "none": 2}
_RESULT_ORDER = {"fail": 0, "temperror": 1, "permerror": 2, "none": 2, "pass": 3}


def _strictest(results: Sequence[DmarcResult]) -> DmarcResult:
    """RFC 7489 6.6.1: of the results for several author domains, the failing one with the
    strictest policy decides; then a temporary error; a pass only when every domain passed."""
    return min(results, key=lambda r: (_RESULT_ORDER[r.result], _STRICTNESS[r.policy]))


async def _author_domain_result(resolver: Resolver, domain: str, ambiguous: str, spf: SpfResult | None,
                                dkim: Sequence[DkimVerification], sample: float) -> DmarcResult:
    record, record_domain, status = await discover(resolver, domain)
    if status == "tempfail":
        return DmarcResult("temperror", domain, reason="DMARC record look-up failed")
    if not ambiguous:
        return evaluate(domain, record, record_domain, spf, dkim, sample)
    forced = evaluate(domain, record, record_domain, None, (), sample)  # no pass can count
    if forced.result == "none":
        return DmarcResult("none", domain, reason=f"no DMARC record; {ambiguous}")
    return DmarcResult("fail", domain, forced.policy, record_domain,
                       f"{ambiguous}: treated as failing (RFC 7489 6.6.1)")


async def evaluate_author(resolver: Resolver, author: Author, spf: SpfResult | None,
                          dkim: Sequence[DkimVerification], sample: float) -> DmarcResult:
    """The DMARC result of a message by what its From: field says (RFC 7489 6.6.1).

    Exactly one author domain: the ordinary evaluation. Several domains in one well-formed From:
    each is evaluated and the strictest failing policy applies. A From: that cannot be read one
    way (several From fields, obsolete syntax, an unparsable value, a malformed header block): each
    domain it names fails under its own policy. No domain at all, too many, or an address whose
    domain is no DNS name: ``no_author``.
    """
    if author.undeterminable:  # RFC 7489 6.6.1: no author domain can be determined for one address
        return DmarcResult("permerror", "", reason="From: names an address whose domain is no DNS name",
                           no_author=True)
    if not author.domains or len(author.domains) > MAX_AUTHOR_DOMAINS:
        why = author.problem or "From field without an author domain"
        return DmarcResult("permerror", "", reason=why if author.domains == () else "too many author domains",
                           no_author=True)
    results = [await _author_domain_result(resolver, domain, author.problem, spf, dkim, sample)
               for domain in author.domains]
    return _strictest(results)
