"""Fixtures of the logging tests: every test leaves the logging configuration as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from hardmail.ops import log


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger(log.ROOT_LOGGER_NAME)
    level = root.level
    yield
    log.remove_configured_handler()
    root.setLevel(level)
