"""Structured logging: one JSON object per line per event, never a secret in it.

(Stub: the full implementation replaces this file.)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log_event(event: str, *, level: str = "info", **fields: Any) -> None:
    record = {"ts": time.time(), "level": level, "event": event, **fields}
    sys.stderr.write(json.dumps(record, default=str) + "\n")
