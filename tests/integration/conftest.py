"""Fixtures for integration tests: a seeded live server on loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import ServerThread, running_server, server_config


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path / "data")) as server:
        yield server
