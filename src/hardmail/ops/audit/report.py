"""The audit report on a terminal (a rich table) and as JSON.

The table has one row per finding, worst first: the check id (and the probed listener), the
practice, the severity in its colour, what was seen and the fix; a summary line with the score
and the count of each severity follows. Every cell is plain text (a finding's evidence comes
from a peer and is never read as markup). The JSON is :meth:`AuditReport.to_json`, with a
``schema`` version.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from hardmail.ops.audit.findings import Finding, Severity
from hardmail.ops.audit.runner import AuditReport

JSON_SCHEMA = "hardmail.audit/1"
STYLE = {Severity.CRITICAL: "bold white on red", Severity.HIGH: "bold red", Severity.MEDIUM: "yellow",
         Severity.LOW: "cyan", Severity.OK: "green", Severity.INFO: "dim"}
COUNTED = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.OK)


def report_json(report: AuditReport) -> dict[str, Any]:
    return {"schema": JSON_SCHEMA, **report.to_json()}


def summary_line(report: AuditReport) -> str:
    """``score 86/100: 1 high, 1 medium, 23 ok, 4 not checked``."""
    counts = report.counts()
    parts = [f"{counts[s.value]} {s.value}" for s in COUNTED if counts[s.value]]
    if counts[Severity.INFO.value]:
        parts.append(f"{counts[Severity.INFO.value]} not checked")
    return f"score {report.score}/100: " + (", ".join(parts) or "no findings")


def findings_table(findings: list[Finding], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_lines=True)
    for header, ratio in (("check", 2), ("practice", 1), ("severity", 1), ("evidence", 4), ("fix", 3)):
        table.add_column(header, overflow="fold", ratio=ratio)
    for finding in findings:
        table.add_row(_check_cell(finding), Text(str(finding.practice)),
                      Text(finding.severity.value, style=STYLE[finding.severity]),
                      Text(finding.evidence), Text(finding.fix))
    return table


def _check_cell(finding: Finding) -> Text:
    cell = Text(finding.check, style="bold")
    if finding.target:
        cell.append(f"\n{finding.target}", style="dim")
    return cell


def print_report(report: AuditReport, console: Console) -> None:
    """The table and the summary line; ``console`` is standard output's."""
    title = "Security audit" + ("" if report.target == "own" else f" of {report.target}")
    console.print(findings_table(list(report.findings), f"{title} ({report.finished_at:%Y-%m-%d %H:%M} UTC)"))
    style = STYLE[report.worst] if report.worst is not Severity.OK else "bold green"
    console.print(Text(summary_line(report), style=style))
    if report.exit_status:
        console.print(Text("high or critical findings: exit status 1", style="bold red"))
