"""Findings: severity order, score, exit status, JSON round trip."""

from __future__ import annotations

from hardmail.ops.audit.findings import CheckInfo, Finding, Severity, exit_status, score, sorted_findings, worst

CHECK = CheckInfo("relay.open", 8, "Open relay", "Spammers use open relays.", "remove the range")


def test_score_and_exit_status_follow_the_worst_findings() -> None:
    findings = [CHECK.ok("refused"), CHECK.finding(Severity.MEDIUM, "x"), CHECK.skipped("no server")]
    assert score(findings) == 96
    assert exit_status(findings) == 0
    findings.append(CHECK.finding(Severity.HIGH, "accepted"))
    assert exit_status(findings) == 1
    assert worst(findings) is Severity.HIGH
    assert score([CHECK.finding(Severity.CRITICAL, "x")] * 5) == 0


def test_info_counts_for_nothing() -> None:
    assert worst([CHECK.skipped("no server")]) is Severity.OK
    assert score([CHECK.skipped("no server")]) == 100


def test_sorted_worst_first_and_json_round_trip() -> None:
    low, critical = CHECK.finding(Severity.LOW, "a"), CHECK.finding(Severity.CRITICAL, "b", details=["x%y@z"])
    assert sorted_findings([low, critical]) == [critical, low]
    again = Finding.from_json(critical.to_json())
    assert again == critical
    assert critical.to_json()["severity"] == "critical"


def test_ok_and_skipped_have_no_fix() -> None:
    assert CHECK.ok("fine").fix == ""
    assert CHECK.skipped("n/a").evidence == "not checked: n/a"
    assert CHECK.finding(Severity.HIGH, "bad").fix == "remove the range"
