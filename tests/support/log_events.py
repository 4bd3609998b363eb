"""The events a test's code logged through ``hardmail.ops.log.log_event`` (JSON lines that pytest's
``caplog`` captured), by name."""

from __future__ import annotations

import json
from typing import Any

import pytest


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The ``name`` events logged so far, in order."""
    found = [json.loads(r.getMessage()) for r in caplog.records if f'"{name}"' in r.getMessage()]
    return [event for event in found if event.get("event") == name]
