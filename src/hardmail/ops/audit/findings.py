"""Findings of the audit: what a check saw, how bad it is, why it matters and the exact fix.

A check is described once (:class:`CheckInfo`: id, practice 1-17, title, why, fix); each run gives
one :class:`Finding` per check with its severity and evidence. Severities, worst first: critical,
high, medium, low, ok; ``info`` marks a check that could not run here (the evidence says why) and
counts for nothing. The score is 100 minus a weight per finding, never below 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    OK = "ok"
    INFO = "info"  # the check did not run here (no server running, not applicable to the target)

    @property
    def rank(self) -> int:
        """0 for critical ... 5 for info: sorts worst first."""
        return _ORDER.index(self)

    @property
    def blocking(self) -> bool:
        """High and critical findings make ``hardmail audit`` exit 1."""
        return self in (Severity.CRITICAL, Severity.HIGH)


_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.OK, Severity.INFO)
PENALTY = {Severity.CRITICAL: 25, Severity.HIGH: 10, Severity.MEDIUM: 4, Severity.LOW: 1}


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """One check, described once: listed in ``docs/audit.md`` and shown with every finding of it."""

    id: str  # dotted, stable: "relay.open", "smtp.smuggling", "tls.versions", "dns.spf", ...
    practice: int  # 1-17, the practice of hardmail's list it belongs to
    title: str  # short: "Open relay"
    why: str  # why it matters, one or two sentences
    fix: str  # the default fix: the config key or command to run

    def finding(self, severity: Severity, evidence: str, fix: str | None = None, *,
                target: str = "", details: Sequence[str] = ()) -> Finding:
        """A finding of this check; ``fix`` replaces the default fix when the evidence calls for another."""
        return Finding(self.id, self.practice, severity, self.title, evidence, self.why,
                       self.fix if fix is None else fix, target, tuple(details))

    def ok(self, evidence: str, *, target: str = "") -> Finding:
        return self.finding(Severity.OK, evidence, "", target=target)

    def skipped(self, why_not: str, *, target: str = "") -> Finding:
        return self.finding(Severity.INFO, f"not checked: {why_not}", "", target=target)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    practice: int
    severity: Severity
    title: str
    evidence: str  # what was seen: never a secret (no password, no key material)
    why: str
    fix: str  # "" when there is nothing to do
    target: str = ""  # "127.0.0.1:25" for a probe, "" for the server's own data and config
    details: tuple[str, ...] = field(default=())  # e.g. each address form that was relayed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["details"] = list(self.details)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        values = dict(data)
        values["severity"] = Severity(values["severity"])
        values["details"] = tuple(values.get("details", ()))
        return cls(**values)

    @property
    def key(self) -> tuple[str, str]:
        """What identifies this finding between two runs (for "what changed")."""
        return self.check, self.target


def score(findings: Iterable[Finding]) -> int:
    """100 minus 25 per critical, 10 per high, 4 per medium, 1 per low finding; at least 0."""
    return max(0, 100 - sum(PENALTY.get(f.severity, 0) for f in findings))


def worst(findings: Iterable[Finding]) -> Severity:
    """The worst severity among ``findings`` (ok when there are none)."""
    ranked = [f.severity for f in findings if f.severity is not Severity.INFO]
    return min(ranked, key=lambda s: s.rank, default=Severity.OK)


def exit_status(findings: Iterable[Finding]) -> int:
    """0 when nothing is high or critical, else 1 (so that an audit can gate a deployment)."""
    return 1 if any(f.severity.blocking for f in findings) else 0


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Worst first; then by practice and check id."""
    return sorted(findings, key=lambda f: (f.severity.rank, f.practice, f.check, f.target))
