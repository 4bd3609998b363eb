"""A session closed by a limit says which one: its total lifetime is not an idle timeout."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import RawClient, ServerThread, running_server, server_config

MAX_NOOPS = 1_000_000  # a bound for the loop, never reached: the session limit ends it long before


@pytest.fixture
def short_lived_server(tmp_path: Path) -> Iterator[ServerThread]:
    # The client is never silent for long (it sends NOOP after NOOP), so only the total limit can end it.
    config = server_config(tmp_path / "data", smtp={"timeouts": {"session": 0.3, "command": 300.0},
                                                    "max_commands": MAX_NOOPS + 10})
    with running_server(config) as server:
        yield server


def test_busy_session_at_its_total_limit_is_told_so(
        short_lived_server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    client = RawClient(short_lived_server.address("smtp"))
    assert client.read_reply()[0] == 220
    assert client.command("EHLO client.example")[0] == 250
    for _ in range(MAX_NOOPS):
        code, lines = client.command("NOOP")
        if code != 250:
            break
    assert (code, lines) == (421, ["4.4.2 Session time limit reached, closing connection"])
    assert client.closed_by_server()
    client.close()
    timeouts = [json.loads(r.getMessage()) for r in caplog.records if '"smtp.timeout"' in r.getMessage()]
    assert [(t["reason"], t["code"]) for t in timeouts] == [("session_limit", "4.4.2")]


def test_idle_timeout_still_says_idle(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = server_config(tmp_path / "data", smtp={"timeouts": {"command": 0.3}})
    with running_server(config) as server:
        client = RawClient(server.address("smtp"))
        assert client.read_reply()[0] == 220
        code, lines = client.read_reply()  # the server speaks first when the client idles
        client.close()
    assert (code, lines) == (421, ["4.4.2 Idle timeout, closing connection"])
    timeouts = [json.loads(r.getMessage()) for r in caplog.records if '"smtp.timeout"' in r.getMessage()]
    assert [t["reason"] for t in timeouts] == ["idle_timeout"]
