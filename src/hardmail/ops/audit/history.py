"""What changed between two audit runs of the same target (``hardmail audit history``).

Findings are matched by their key (check id and probed listener). A *problem* is a finding of
severity critical, high, medium or low.
- new: a problem now that was not one in the previous run (absent, ok or not checked then);
- resolved: a problem then that is ok now;
- changed: a problem then whose severity is another now (worse, better, or "info": no longer
  checked; "gone": no longer reported at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hardmail.ops.audit.findings import Finding, Severity

PROBLEMS = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)
GONE = "gone"


@dataclass(frozen=True)
class SeverityChange:
    finding: Finding  # as it was in the previous run
    now: str  # the severity now, or "gone"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.finding.check, "target": self.finding.target, "title": self.finding.title,
                "was": self.finding.severity.value, "now": self.now}


@dataclass(frozen=True)
class Changes:
    new: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)
    changed: list[SeverityChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.new or self.resolved or self.changed)

    def summary(self) -> str:
        """``2 new, 1 resolved, 1 changed`` (``no change``)."""
        parts = [f"{len(items)} {name}" for name, items in
                 (("new", self.new), ("resolved", self.resolved), ("changed", self.changed)) if items]
        return ", ".join(parts) or "no change"

    def to_json(self) -> dict[str, Any]:
        brief = [{"check": f.check, "target": f.target, "title": f.title, "severity": f.severity.value,
                  "evidence": f.evidence} for f in self.new]
        return {"new": brief, "resolved": [{"check": f.check, "target": f.target, "title": f.title,
                                            "was": f.severity.value} for f in self.resolved],
                "changed": [change.to_json() for change in self.changed]}


def changes(previous: Iterable[Finding], current: Iterable[Finding]) -> Changes:
    before = {f.key: f for f in previous}
    now = {f.key: f for f in current}
    result = Changes()
    for key, finding in now.items():
        if finding.severity in PROBLEMS and (key not in before or before[key].severity not in PROBLEMS):
            result.new.append(finding)
    for key, old in before.items():
        if old.severity not in PROBLEMS:
            continue
        found = now.get(key)
        if found is not None and found.severity is Severity.OK:
            result.resolved.append(old)
        elif found is None or found.severity is not old.severity:
            result.changed.append(SeverityChange(old, GONE if found is None else found.severity.value))
    return result
