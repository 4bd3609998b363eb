"""Log volume: clients looping on a command cannot fill the disk through the log (over real sockets)."""

from __future__ import annotations

import json
import logging
import smtplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hardmail.config.schema import LoggingSection
from hardmail.ops import log
from hardmail.ops.log import configure_logging
from hardmail.server import smtp_session
from support.live import (
    ALICE,
    ALICE_PASSWORD,
    RawClient,
    ServerThread,
    client_tls_context,
    running_server,
    server_config,
)

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


def ehlo_from(source: str, address: tuple[str, int], count: int) -> None:
    """One connection from ``source`` (any 127.0.0.x is this machine), ``count`` EHLOs, QUIT."""
    sock = socket.create_connection(address, timeout=20, source_address=(source, 0))
    with sock, sock.makefile("rb") as replies:
        sock.sendall(b"".join(f"EHLO n{i}.{source}.example\r\n".encode() for i in range(count)) + b"QUIT\r\n")
        assert replies.readline().startswith(b"220")
        codes = [line[:3] for line in replies if line[3:4] == b" "]
    assert codes == [b"250"] * count + [b"221"]


def test_many_addresses_of_one_subnet_share_one_budget(live_server: ServerThread, log_file: Path) -> None:
    """A /24 of attackers: 60 addresses of 127.0.0.0/24, 30 new EHLO names each. Without the
    subnet's budget, each address would write its own 20 lines (1,200)."""
    configure_logging(LoggingSection(file=log_file, per_source_burst=20, per_subnet_burst=50,
                                     per_source_interval=3600.0))
    sources = [f"127.0.0.{n}" for n in range(2, 62)]
    threads = [threading.Thread(target=ehlo_from, args=(s, live_server.address("smtp"), 30)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    lines = written(log_file)  # stops logging: what is still counted is written now
    helo = [line for line in lines if line["event"] == "smtp.helo"]
    assert len(helo) <= 50
    counted = sum(line["count"] for line in lines
                  if line["event"] == "log.suppressed" and line["suppressed_event"] == "smtp.helo")
    assert len(helo) + counted == 60 * 30  # nothing is lost from the count
    assert any(line.get("subnet") == "127.0.0.0/24" for line in lines if line["event"] == "log.suppressed")
    assert sum(1 for line in lines if line["event"] == "smtp.connect") <= 50


def test_a_summary_is_written_when_its_interval_ends_even_if_nothing_else_is_logged(
        live_server: ServerThread, log_file: Path) -> None:
    configure_logging(LoggingSection(file=log_file, per_source_burst=5, per_source_interval=0.2))
    client = RawClient(live_server.address("smtp"))
    try:
        assert client.read_reply()[0] == 220
        client.send(b"".join(f"EHLO n{i}.example\r\n".encode() for i in range(30)))
        for _ in range(30):
            assert client.read_reply()[0] == 250
        # The session stays open and quiet, and no other client comes: the server's own timer
        # must write the summary.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = log_file.read_text(encoding="utf-8")
            if '"log.suppressed"' in text:
                break
            time.sleep(0.05)  # polls the file for the line; the test asserts no duration
        summaries = [json.loads(line) for line in text.splitlines() if '"log.suppressed"' in line]
        assert [(s["suppressed_event"], s["count"]) for s in summaries] == [("smtp.helo", 25)]
    finally:
        client.close()


def test_an_account_past_its_message_limit_cannot_fill_the_log(tmp_path: Path, log_file: Path) -> None:
    """A stolen password: the account's hourly limit is reached, and the client keeps trying."""
    config = server_config(tmp_path / "data", access={"limits": {"messages_per_hour": 1}})
    with running_server(config) as server:
        configure_logging(LoggingSection(file=log_file, per_source_burst=5, per_source_interval=3600.0))
        with smtplib.SMTP(*server.address("submission"), timeout=20) as client:
            client.starttls(context=client_tls_context())
            client.login(ALICE, ALICE_PASSWORD)
            codes = []
            for _ in range(100):
                codes.append(client.mail(ALICE)[0])
                client.rset()
        lines = written(log_file)
    assert codes[0] == 250 and 250 not in codes[1:]  # the limit holds
    limits = [line for line in lines if line["event"] == "access.limit"]
    assert 1 <= len(limits) <= 5
    counted = sum(line["count"] for line in lines
                  if line["event"] == "log.suppressed" and line["suppressed_event"] == "access.limit")
    assert len(limits) + counted == 99


def test_a_crash_one_client_can_cause_again_and_again_is_limited(
        live_server: ServerThread, log_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(self: object) -> None:
        raise RuntimeError("a bug one input triggers")

    monkeypatch.setattr(smtp_session.SmtpSession, "run", crash)
    configure_logging(LoggingSection(file=log_file, per_source_burst=3, per_source_interval=3600.0))
    for _ in range(30):
        with socket.create_connection(live_server.address("smtp"), timeout=20) as sock:
            assert sock.recv(100) == b""  # the crashed session is closed
    lines = written(log_file)
    crashes = [line for line in lines if line["event"] == "smtp.session_crash"]
    assert len(crashes) == 3 and crashes[0]["peer"] == "127.0.0.1"
    assert [line["count"] for line in lines if line["event"] == "log.suppressed"] == [27]
