"""Log volume: clients looping on a command cannot fill the disk through the log (over real sockets)."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardmail.config.schema import LoggingSection
from hardmail.ops import log
from hardmail.ops.log import configure_logging
from support.live import RawClient, ServerThread

CONNECTIONS = 20
EHLOS = 500


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    root = logging.getLogger(log.ROOT_LOGGER_NAME)
    level = root.level
    yield tmp_path / "hardmail.log"
    log.remove_configured_handler()
    root.setLevel(level)


def written(target: Path) -> list[dict[str, Any]]:
    log.remove_configured_handler()
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]


def ehlo_loop(address: tuple[str, int], names: list[str]) -> None:
    """One connection: every EHLO sent at once, then every reply read, then QUIT."""
    client = RawClient(address)
    try:
        assert client.read_reply()[0] == 220
        client.send(b"".join(f"EHLO {name}\r\n".encode() for name in names))
        for _ in names:
            assert client.read_reply()[0] == 250
        assert client.command("QUIT")[0] == 221
    finally:
        client.close()


def flood(live_server: ServerThread, name: str) -> None:
    address = live_server.address("smtp")
    threads = [threading.Thread(target=ehlo_loop, args=(address, [name.format(c=c, i=i) for i in range(EHLOS)]))
               for c in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()


def test_ehlo_loops_write_a_bounded_number_of_lines_and_count_the_rest(
        live_server: ServerThread, log_file: Path) -> None:
    clock = FakeClock()
    configure_logging(LoggingSection(file=log_file, per_source_burst=20, per_source_interval=10.0), clock=clock)
    flood(live_server, "client{c}-{i}.example")  # every name new: each EHLO would be a line at info
    clock.now += 10.0  # the interval ends; the next session line brings the summaries
    ehlo_loop(live_server.address("smtp"), ["last.example"])
    lines = written(log_file)
    assert len(lines) < 2_000  # instead of 10,000 smtp.helo lines and 40 connect/disconnect lines
    helo_written = sum(1 for line in lines if line["event"] == "smtp.helo")
    summaries = [line for line in lines if line["event"] == "log.suppressed"]
    suppressed = Counter[str]()
    for summary in summaries:
        assert summary["peer"] == "127.0.0.1"
        suppressed[summary["suppressed_event"]] += summary["count"]
    assert helo_written + suppressed["smtp.helo"] == CONNECTIONS * EHLOS + 1
    assert helo_written <= 2 * 20  # at most a burst per interval, two intervals
    connects = sum(1 for line in lines if line["event"] == "smtp.connect")
    assert connects + suppressed["smtp.connect"] == CONNECTIONS + 1


def test_the_same_ehlo_again_is_not_logged_at_info(live_server: ServerThread, log_file: Path) -> None:
    configure_logging(LoggingSection(file=log_file, per_source_burst=0))  # every line written
    ehlo_loop(live_server.address("smtp"), ["same.example"] * 50 + ["other.example"])
    lines = written(log_file)
    assert [line["helo"] for line in lines if line["event"] == "smtp.helo"] == ["same.example", "other.example"]
