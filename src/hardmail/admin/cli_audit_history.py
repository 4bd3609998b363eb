"""``hardmail audit history``: the score of the kept audit runs over time, and what changed from each
run to the one before it of the same target (new findings, resolved ones, severity changes);
the newest run of each target is shown in detail. Only reads the database.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from hardmail.admin.cli_common import (
    ConfigOption,
    DataDirOption,
    console,
    fail,
    load_cli_config,
    print_json,
    read_only,
    run_async,
    with_store,
)
from hardmail.ops.audit.findings import Severity
from hardmail.ops.audit.history import Changes, changes
from hardmail.ops.audit.report import STYLE, summary_line
from hardmail.ops.audit.runner import AuditReport
from hardmail.store.ports import Store, StoreError

# (run id, trigger, its report, changes since the previous run of its target or None)
Entry = tuple[int, str, AuditReport, Changes | None]


def register(app: typer.Typer) -> None:
    app.command("history")(history_command)


@read_only
def history_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show this many runs, newest first.")] = 20,
    target: Annotated[str | None, typer.Option(
        "--target", help="Only the runs of this target ('own' for the server's own audit).")] = None,
    config: ConfigOption = None, data_dir: DataDirOption = None,
) -> None:
    """Show the audit runs kept in the database: score over time and what changed since the run before."""
    cfg = load_cli_config(config, data_dir)
    try:
        entries = run_async(lambda: with_store(cfg, lambda store: load_history(store, limit, target)))
    except StoreError as exc:
        fail(f"cannot read the audit runs: {exc}", "check storage.url and that the database is reachable")
    if as_json:
        print_json({"runs": [_entry_json(entry) for entry in entries]})
    elif not entries:
        typer.echo("no audit run kept yet; run `hardmail audit` (the server also runs it daily)")
    else:
        _print(entries)


async def load_history(store: Store, limit: int, target: str | None) -> list[Entry]:
    runs = await store.security.list_audit_runs(limit, target)
    entries = []
    earlier_of: dict[str, list[Any]] = {}
    for run in runs:
        if run.target not in earlier_of:  # every run of that target up to one more than shown
            earlier_of[run.target] = await store.security.list_audit_runs(limit + 1, run.target)
        same = earlier_of[run.target]
        index = next(i for i, r in enumerate(same) if r.id == run.id)
        previous = same[index + 1] if index + 1 < len(same) else None
        report = AuditReport.from_run(run)
        found = changes(AuditReport.from_run(previous).findings, report.findings) if previous else None
        entries.append((run.id, run.trigger, report, found))
    return entries


def _entry_json(entry: Entry) -> dict[str, Any]:
    run_id, trigger, report, found = entry
    return {"id": run_id, "target": report.target, "trigger": trigger, "started_at": report.started_at.isoformat(),
            "finished_at": report.finished_at.isoformat(), "score": report.score, "worst": report.worst.value,
            "counts": report.counts(), "changes": found.to_json() if found is not None else None}


def _print(entries: list[Entry]) -> None:
    table = Table(title="Audit runs, newest first", title_justify="left")
    for header in ("run", "finished (UTC)", "target", "by", "score", "", "worst", "since the run before"):
        table.add_column(header, overflow="fold")
    for run_id, trigger, report, found in entries:
        table.add_row(str(run_id), f"{report.finished_at:%Y-%m-%d %H:%M}", Text(report.target), trigger,
                      str(report.score), Text("█" * (report.score // 10) or "▏", style=STYLE[report.worst]),
                      Text(report.worst.value, style=STYLE[report.worst]),
                      "first run" if found is None else found.summary())
    console.print(table)
    shown: set[str] = set()
    for _, _, report, found in entries:
        if report.target not in shown:
            shown.add(report.target)
            _print_details(report, found)


def _print_details(report: AuditReport, found: Changes | None) -> None:
    out = console.print
    name = "own server" if report.target == "own" else report.target
    when = f"{report.finished_at:%Y-%m-%d %H:%M} UTC"
    out(Text(f"\nLatest run of {name} ({when}): {summary_line(report)}", style="bold"))
    if found is None:
        out("  no earlier run to compare with")
        return
    if not found:
        out("  nothing changed since the run before")
    for finding in found.new:
        line = f"  new       {finding.severity.value:<8} {_name(finding.check, finding.target)}: {finding.evidence}"
        out(Text(line, style=STYLE[finding.severity]))
    for finding in found.resolved:
        out(Text(f"  resolved  {finding.severity.value:<8} {_name(finding.check, finding.target)}", style="green"))
    for change in found.changed:
        style = STYLE[Severity(change.now)] if change.now in {s.value for s in Severity} else "dim"
        out(Text(f"  changed   {change.finding.severity.value} → {change.now} "
                 f"{_name(change.finding.check, change.finding.target)}", style=style))


def _name(check: str, target: str) -> str:
    return f"{check} on {target}" if target else check
