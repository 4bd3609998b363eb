"""The per-source log rate limit: lines counted past the burst, one summary per ended interval."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hardmail.config.schema import LoggingSection
from hardmail.ops import log
from hardmail.ops.log import EventLogger, configure_logging, log_event
from hardmail.ops.log_limit import SourceLimiter, Suppressed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_counted_then_one_summary_when_the_interval_ended() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(3, 10.0, clock)
    results = [limiter.admit("smtp.helo", "192.0.2.1", 20) for _ in range(10)]
    assert [admitted for admitted, _ in results] == [True] * 3 + [False] * 7
    assert all(ended == () for _, ended in results)
    clock.now += 10.0
    admitted, ended = limiter.admit("smtp.helo", "192.0.2.1", 20)
    assert admitted
    assert ended == (Suppressed("smtp.helo", "192.0.2.1", 7, 20, 10.0),)


def test_each_event_and_source_has_its_own_budget_and_any_line_brings_the_summary() -> None:
    clock = FakeClock()
    limiter = SourceLimiter(1, 10.0, clock)
    assert limiter.admit("smtp.helo", "192.0.2.1", 20)[0]
    assert not limiter.admit("smtp.helo", "192.0.2.1", 20)[0]
    assert limiter.admit("smtp.reject", "192.0.2.1", 20)[0]
    assert limiter.admit("smtp.helo", "192.0.2.2", 20)[0]
    clock.now += 11.0
    admitted, ended = limiter.admit("smtp.connect", "198.51.100.9", 20)  # another source's line
    assert admitted and [(s.event, s.source, s.count) for s in ended] == [("smtp.helo", "192.0.2.1", 1)]


def test_memory_is_bounded_and_an_evicted_window_keeps_its_count() -> None:
    limiter = SourceLimiter(1, 10.0, FakeClock(), max_keys=2)
    limiter.admit("e", "a", 20)
    limiter.admit("e", "a", 30)
    limiter.admit("e", "b", 20)
    admitted, ended = limiter.admit("e", "c", 20)
    assert admitted and ended == (Suppressed("e", "a", 1, 30, 0.0),)


def configure(tmp_path: Path, clock: FakeClock, burst: int = 2) -> Path:
    target = tmp_path / "hardmail.log"
    configure_logging(LoggingSection(file=target, per_source_burst=burst, per_source_interval=10.0), clock=clock)
    return target


def lines(target: Path) -> list[dict[str, Any]]:
    log.remove_configured_handler()
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]


def test_session_events_are_limited_and_summarised(tmp_path: Path) -> None:
    clock = FakeClock()
    target = configure(tmp_path, clock)
    session = EventLogger(session="s1", peer="2001:db8::1")
    other_host_same_64 = EventLogger(session="s2", peer="2001:db8::2")
    for _ in range(5):
        session.event("smtp.auth", level="warning", result="failure")
        other_host_same_64.event("smtp.auth", level="warning", result="failure")
    clock.now += 10.0
    log_event("server.tick")  # not a session line: never limited, and it does not bring summaries
    session.event("smtp.helo", helo="x")
    written = lines(target)
    assert [e["event"] for e in written] == ["smtp.auth", "smtp.auth", "server.tick", "log.suppressed", "smtp.helo"]
    summary = written[3]
    assert summary == {**summary, "level": "warning", "suppressed_event": "smtp.auth",
                       "peer": "2001:db8::/64", "count": 8, "seconds": 10.0}


def test_accepted_messages_and_successful_logins_are_never_limited(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    session = EventLogger(session="s1", peer="192.0.2.7")
    for _ in range(3):
        session.event("smtp.accept", size=10)
        session.event("smtp.auth", result="success")
        log_event("auth.login", account="ann@example.org", result="success", client_ip="192.0.2.7")
    assert len(lines(target)) == 9


def test_errors_a_client_can_cause_again_and_again_are_limited_and_summarised_as_errors(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    session = EventLogger(session="s1", peer="192.0.2.7")
    for _ in range(1000):  # e.g. a command that makes a handler raise
        session.event("smtp.error", level="error", error="X", detail="x" * 300)
    written = lines(target)
    assert [(e["event"], e["level"], e.get("count")) for e in written] == [
        ("smtp.error", "error", None), ("log.suppressed", "error", 999)]


def test_login_failures_named_by_client_ip_are_limited(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=2)
    for _ in range(50):
        log_event("auth.login", level="warning", account="ann@example.org", result="failure", client_ip="192.0.2.7")
    assert [(e["event"], e.get("count")) for e in lines(target)] == [
        ("auth.login", None), ("auth.login", None), ("log.suppressed", 48)]


def test_a_logger_without_a_source_and_a_zero_burst_write_every_line(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    for _ in range(3):
        EventLogger(session="s1").event("smtp.helo")
    assert len(lines(target)) == 3
    target = configure(tmp_path, FakeClock(), burst=0)
    for _ in range(3):
        EventLogger(session="s1", peer="192.0.2.7").event("smtp.helo")
    assert len(lines(target)) == 6


def test_pending_counts_are_written_when_logging_stops(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    session = EventLogger(session="s1", peer="192.0.2.7")
    for _ in range(4):
        session.event("smtp.rcpt", accepted=False)
    written = lines(target)
    assert [(e["event"], e.get("count")) for e in written] == [("smtp.rcpt", None), ("log.suppressed", 3)]


def test_any_event_naming_a_peer_is_limited_and_the_rest_are_not(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    for _ in range(3):
        log_event("access.refused", peer="192.0.2.7", subject="192.0.2.7", stage="connect")
        log_event("access.ban", level="warning", subject="192.0.2.7", kind="failures")  # names no peer
    assert [(e["event"], e.get("count")) for e in lines(target)] == [
        ("access.refused", None), ("access.ban", None), ("access.ban", None), ("access.ban", None),
        ("log.suppressed", 2)]


def test_a_forked_child_does_not_write_the_parents_counts_again(tmp_path: Path) -> None:
    target = configure(tmp_path, FakeClock(), burst=1)
    for _ in range(5):
        log_event("smtp.helo", peer="192.0.2.7")
    pid = os.fork()
    if pid == 0:  # a worker: it configures logging again, which writes what is pending
        try:
            configure(tmp_path, FakeClock(), burst=1)
            log.remove_configured_handler()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    summaries = [e for e in lines(target) if e["event"] == "log.suppressed"]
    assert [s["count"] for s in summaries] == [4]
