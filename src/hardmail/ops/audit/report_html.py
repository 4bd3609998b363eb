"""The audit report as one self-contained HTML page (``hardmail audit --html FILE``), for an admin to
send to a manager: the summary and score first, then the findings grouped by severity, worst
first, each with what was seen, why it matters and the fix.

The page loads nothing: the CSS is inline, there is no script, no image, no font, no link to any
other resource. Every value is escaped (Jinja2 autoescape): a finding's evidence comes from a
peer and may hold anything, ``<script>`` included.
"""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, select_autoescape

from hardmail.ops.audit.findings import Finding, Severity
from hardmail.ops.audit.report import summary_line
from hardmail.ops.audit.runner import AuditReport

COLOUR = {Severity.CRITICAL: "#8b0000", Severity.HIGH: "#c62828", Severity.MEDIUM: "#b26a00",
          Severity.LOW: "#1565c0", Severity.OK: "#2e7d32", Severity.INFO: "#616161"}
HEADING = {Severity.CRITICAL: "Critical", Severity.HIGH: "High", Severity.MEDIUM: "Medium", Severity.LOW: "Low",
           Severity.OK: "Passed", Severity.INFO: "Not checked here"}

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 60em;
       padding: 0 1em; color: #212121; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
.meta { color: #616161; margin-top: 0; }
.score { font-size: 3em; font-weight: bold; margin: .2em 0 0; }
.summary { font-size: 1.1em; }
table.counts { border-collapse: collapse; margin: 1em 0; }
table.counts td { padding: .3em .9em; border: 1px solid #e0e0e0; text-align: center; }
.finding { border-left: .4em solid #9e9e9e; background: #fafafa; margin: .8em 0; padding: .6em 1em; }
.finding h3 { margin: 0 0 .3em; font-size: 1.05em; }
.finding .id { font-family: monospace; color: #424242; font-weight: normal; }
.finding dl { margin: 0; }
.finding dt { font-weight: bold; margin-top: .3em; }
.finding dd { margin: 0 0 0 1em; white-space: pre-wrap; overflow-wrap: anywhere; }
.finding code, .finding dd.fix { font-family: monospace; }
.badge { color: #fff; border-radius: .3em; padding: .05em .45em; font-size: .85em; }
{% for sev in severities %}
.sev-{{ sev.value }} { border-left-color: {{ colour[sev] }}; }
.badge-{{ sev.value }} { background: {{ colour[sev] }}; }
{% endfor %}
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">Run from {{ report.started_at.strftime("%Y-%m-%d %H:%M:%S") }} to
{{ report.finished_at.strftime("%Y-%m-%d %H:%M:%S") }} UTC by hardmail.</p>
<p class="score" style="color: {{ score_colour }}">{{ report.score }}/100</p>
<p class="summary">{{ summary }}.
{% if report.exit_status %}There are high or critical findings: they need attention now.
{% else %}Nothing is high or critical.{% endif %}</p>
<table class="counts"><tr>
{% for sev in severities %}<td><span class="badge badge-{{ sev.value }}">{{ heading[sev] }}</span><br>
{{ counts[sev.value] }}</td>{% endfor %}
</tr></table>
<p>The score starts at 100 and loses 25 per critical, 10 per high, 4 per medium and 1 per low finding.</p>
{% for sev, items in groups %}
<h2>{{ heading[sev] }} ({{ items | length }})</h2>
{% for f in items %}
<div class="finding sev-{{ f.severity.value }}">
<h3><span class="badge badge-{{ f.severity.value }}">{{ f.severity.value }}</span> {{ f.title }}
<span class="id">{{ f.check }}{% if f.target %} on {{ f.target }}{% endif %}, practice {{ f.practice }}</span></h3>
<dl>
<dt>What was seen</dt><dd>{{ f.evidence }}</dd>
{% for line in f.details %}<dd>{{ line }}</dd>{% endfor %}
{% if f.severity.value not in ("ok", "info") %}<dt>Why it matters</dt><dd>{{ f.why }}</dd>{% endif %}
{% if f.fix %}<dt>Fix</dt><dd class="fix">{{ f.fix }}</dd>{% endif %}
</dl>
</div>
{% endfor %}
{% endfor %}
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=select_autoescape(default=True, default_for_string=True),
                           trim_blocks=True, lstrip_blocks=True)


def render_html(report: AuditReport) -> str:
    title = "hardmail security audit" + ("" if report.target == "own" else f" of {report.target}")
    groups: list[tuple[Severity, list[Finding]]] = []
    for severity in Severity:
        items = [f for f in report.findings if f.severity is severity]
        if items:
            groups.append((severity, items))
    worst = report.worst
    return _ENVIRONMENT.from_string(TEMPLATE).render(
        title=title, report=report, summary=summary_line(report), counts=report.counts(), groups=groups,
        severities=list(Severity), colour=COLOUR, heading=HEADING,
        score_colour=COLOUR[worst] if worst is not Severity.OK else COLOUR[Severity.OK])


def write_html(report: AuditReport, path: Path) -> None:
    """Write the page whole (a temporary file renamed over ``path``), readable by its owner only: it
    names the listeners, the weaknesses found and the probe account."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as page:
        os.fchmod(page.fileno(), 0o600)  # an existing temporary file keeps its mode through O_CREAT
        page.write(render_html(report))
    temporary.replace(path)
