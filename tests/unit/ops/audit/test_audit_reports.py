"""The audit's reports: JSON shape, the terminal table, the self-contained and escaped HTML page,
and what changed between two runs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from rich.console import Console

from hardmail.ops.audit.findings import CheckInfo, Finding, Severity
from hardmail.ops.audit.history import changes
from hardmail.ops.audit.report import print_report, report_json, summary_line
from hardmail.ops.audit.report_html import render_html, write_html
from hardmail.ops.audit.runner import AuditReport

RELAY = CheckInfo("relay.open", 8, "Open relay", "Spammers use it.", "smtp.trusted_networks: remove 0.0.0.0/0")
TLS = CheckInfo("tls.versions", 3, "Old TLS", "Readable traffic.", "tls.minimum_version = \"1.2\"")
VRFY = CheckInfo("session.vrfy", 7, "VRFY", "Enumeration.", "smtp.vrfy = false")
DNS = CheckInfo("dns.spf", 9, "SPF", "Spoofing.", "publish v=spf1 mx -all")
HOSTILE = "<script>alert('x')</script> & \"quoted\""
T0 = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)


def report(*findings: Finding, target: str = "own", at: datetime = T0) -> AuditReport:
    return AuditReport(at, at, target, tuple(findings))


SAMPLE = report(RELAY.finding(Severity.CRITICAL, f"250 to RCPT from {HOSTILE}", target="127.0.0.1:25",
                              details=["user%example.com@mail.example.test"]),
                TLS.finding(Severity.MEDIUM, "TLS 1.1 accepted", target="127.0.0.1:465"),
                VRFY.ok("VRFY answered 252"), DNS.skipped("no domain"))


def test_json_has_the_schema_the_summary_and_every_finding() -> None:
    data = json.loads(json.dumps(report_json(SAMPLE)))
    assert data["schema"] == "hardmail.audit/1"
    assert (data["target"], data["score"], data["worst"], data["exit_status"]) == ("own", 71, "critical", 1)
    assert data["counts"] == {"critical": 1, "high": 0, "medium": 1, "low": 0, "ok": 1, "info": 1}
    first = data["findings"][0]
    assert set(first) == {"check", "practice", "severity", "title", "evidence", "why", "fix", "target", "details"}
    assert (first["check"], first["severity"]) == ("relay.open", "critical")
    assert first["details"] == ["user%example.com@mail.example.test"]


def test_the_table_has_a_row_per_finding_and_the_summary() -> None:
    console = Console(record=True, width=200)
    print_report(SAMPLE, console)
    text = console.export_text()
    for needle in ("relay.open", "127.0.0.1:25", "tls.versions", "session.vrfy", "dns.spf", HOSTILE,
                   "smtp.trusted_networks: remove 0.0.0.0/0", "exit status 1"):
        assert needle in text
    assert summary_line(SAMPLE) == "score 71/100: 1 critical, 1 medium, 1 ok, 1 not checked"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_page_is_self_contained_and_escapes_everything(tmp_path: Path) -> None:
    path = tmp_path / "audit.html"
    write_html(SAMPLE, path)
    page = path.read_text(encoding="utf-8")
    assert page == render_html(SAMPLE)
    parser = _Collector()
    parser.feed(page)
    names = [tag for tag, _ in parser.tags]
    assert "script" not in names and "link" not in names and "img" not in names and "iframe" not in names
    assert not [attrs for _, attrs in parser.tags if {"src", "href"} & set(attrs)]
    assert not re.search(r"url\(|@import|https?://", page)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in page
    text = "".join(parser.text)
    for needle in ("71/100", "Critical (1)", "Spammers use it.", "smtp.trusted_networks: remove 0.0.0.0/0",
                   "relay.open on 127.0.0.1:25", "user%example.com@mail.example.test", HOSTILE):
        assert needle in text


def test_what_changed_since_the_previous_run() -> None:
    before = [RELAY.finding(Severity.CRITICAL, "relayed", target="a"), TLS.finding(Severity.MEDIUM, "1.1", target="a"),
              VRFY.finding(Severity.LOW, "VRFY 250"), DNS.finding(Severity.HIGH, "no SPF")]
    after = [RELAY.ok("refused", target="a"), TLS.finding(Severity.HIGH, "1.0", target="a"),
             VRFY.finding(Severity.LOW, "VRFY 250 again"), CheckInfo("dns.dmarc", 9, "DMARC", "", "").finding(
                 Severity.MEDIUM, "p=none")]
    found = changes(before, after)
    assert [f.check for f in found.new] == ["dns.dmarc"]
    assert [f.check for f in found.resolved] == ["relay.open"]
    assert [(c.finding.check, c.finding.severity.value, c.now) for c in found.changed] == [
        ("tls.versions", "medium", "high"), ("dns.spf", "high", "gone")]
    assert found.summary() == "1 new, 1 resolved, 2 changed"
    assert not changes(after, after) and changes(after, after).summary() == "no change"
    data = found.to_json()
    assert data["changed"][1] == {"check": "dns.spf", "target": "", "title": "SPF", "was": "high", "now": "gone"}
