"""Smoke runs of the benchmark scripts at a tiny size, so they do not rot (no timings are checked).

Each script starts its servers as child processes on loopback and must stop them all; Postfix
takes part only where it is installed and the test runs as root (its master needs root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
POSTFIX_USABLE = Path("/usr/lib/postfix/sbin/master").exists() and os.geteuid() == 0


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=600)


def test_smtp_throughput_runs_every_workload_and_stores_what_it_accepts(tmp_path: Path) -> None:
    done = _run("smtp_throughput.py", "--messages", "30", "--sessions", "3", "--rounds", "1",
                "--servers", "hardmail,aiosmtpd", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "smtp_throughput.json").read_text())
    assert {"loadgen reuse", "loadgen new", "loadgen reuse TLS", "loadgen new TLS"} <= set(result["summary"])
    assert all(not run["errors"] and run["sent"] == 30 for run in result["runs"])
    assert result["hardmail_stored"] == result["hardmail_accepted"] > 0
    assert "hardmail/aiosmtpd" in (tmp_path / "smtp_throughput.md").read_text()


@pytest.mark.skipif(not POSTFIX_USABLE, reason="Postfix is not installed here (bench/setup.sh), or not root")
def test_smtp_throughput_runs_beside_postfix(tmp_path: Path) -> None:
    done = _run("smtp_throughput.py", "--messages", "20", "--sessions", "2", "--rounds", "1", "--no-tls",
                "--servers", "hardmail,postfix", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "smtp_throughput.json").read_text())
    assert {run["server"] for run in result["runs"]} == {"hardmail", "postfix"}
    assert "hardmail/postfix" in (tmp_path / "smtp_throughput.md").read_text()


def test_idle_connections_reports_both_servers(tmp_path: Path) -> None:
    done = _run("idle_connections.py", "--sessions", "30", "--probes", "2", "--out", str(tmp_path))
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1: hardmail grew more per session (not judged here)
    result = json.loads((tmp_path / "idle_connections.json").read_text())
    assert set(result["results"]) == {"hardmail", "aiosmtpd"}
    assert all(r["sessions"] == 30 and r["memory_after"] > 0 for r in result["results"].values())


def test_profile_accept_reports_cpu_per_process_and_a_profile(tmp_path: Path) -> None:
    done = _run("profile_accept.py", "--messages", "20", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "profile_accept.json").read_text())
    hardmail = result["servers"]["hardmail"]["cpu_us_per_message"]
    assert {"hardmail server", "hardmail Maildir writer"} <= set(hardmail)
    assert result["servers"]["aiosmtpd"]["messages_per_second"] > 0
    assert "tottime" in (tmp_path / "profile.txt").read_text()


def test_hostile_data_reports_stall_and_memory_for_every_case(tmp_path: Path) -> None:
    done = _run("hostile_data.py", "--label", "smoke", "--header-mb", "0.3", "--big-mb", "1", "--concurrent", "2",
                "--gap-ms", "0", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "hostile_data.json").read_text())
    cases = result["runs"]["smoke"]["results"]
    assert set(cases) == {"header-removal", "header-removal+body", "concurrent-big"}
    assert cases["concurrent-big"]["replies"] == ["250 2.0.0"]
    assert cases["header-removal+body"]["replies"] == ["250 2.0.0"]
    assert all(case["rss_peak_mb"] > 0 and case["probes"] > 0 for case in cases.values())
    assert "event-loop stall" in (tmp_path / "hostile_data.md").read_text()
