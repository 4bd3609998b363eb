"""Structured logging: one JSON object per line per event, and never a secret in it.

Every event goes through the stdlib logger ``hardmail.events`` as one record whose message is the
complete JSON line (``{"ts": ..., "level": ..., "event": ..., <fields>}``), so any stdlib handler,
including pytest's ``caplog``, sees exactly what is written. ``configure_logging`` installs the one
handler that writes those lines (or readable console lines) to standard error or a file.

Field values under secret-looking keys are replaced by ``[redacted]``; callers must still never
pass protocol payloads of AUTH. The formatting is hand-written rather than structlog because the
contract above (the record message *is* the JSON line) is a few dozen lines on top of stdlib.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import math
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from hardmail.config.schema import LoggingSection

EVENTS_LOGGER_NAME = "hardmail.events"
ROOT_LOGGER_NAME = "hardmail"
REDACTED = "[redacted]"
SECRET_KEY_PARTS = (
    "password", "passwd", "secret", "token", "credential",
    "auth_data", "authorization", "key_material", "sasl_response",
)
CORE_KEYS = ("ts", "level", "event")
LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
    "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
}
_EVENT_ATTR = "hardmail_event"
_HANDLER_NAME = "hardmail-configured"
_MAX_DEPTH = 6

_events = logging.getLogger(EVENTS_LOGGER_NAME)
_root = logging.getLogger(ROOT_LOGGER_NAME)
if _root.level == logging.NOTSET:
    # Events at info are the point of this module: keep them even before configure_logging.
    _root.setLevel(logging.INFO)


# --- building one event --------------------------------------------------------------------


def utc_timestamp(seconds: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-29T15:00:00.123Z``."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def clean_value(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy: secrets under secret-looking keys redacted, the unknown ``str()``-ed."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= _MAX_DEPTH:
        return _safe_str(value)
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_key(str(k)) else clean_value(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [clean_value(item, depth + 1) for item in value]
    return _safe_str(value)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not cost us the event
        return f"<unprintable {type(value).__name__}>"


def build_event(event: str, level: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object for one event; a field never replaces ts, level or event."""
    payload: dict[str, Any] = {"ts": utc_timestamp(), "level": level, "event": str(event)}
    for key, value in clean_value(dict(fields)).items():
        payload[f"{key}_" if key in CORE_KEYS else key] = value
    return payload


# --- emitting ------------------------------------------------------------------------------


def log_event(event: str, *, level: str = "info", **fields: Any) -> None:
    """Log one event with its fields as one JSON line. Never raises."""
    _emit(event, level, fields)


def _emit(event: str, level: str, fields: Mapping[str, Any]) -> None:
    try:
        numeric = LEVELS.get(str(level).lower(), logging.INFO)
        if not _events.isEnabledFor(numeric):
            return
        payload = build_event(event, logging.getLevelName(numeric).lower(), fields)
        line = json.dumps(payload, ensure_ascii=False)
        _events.log(numeric, line, extra={_EVENT_ATTR: payload})
    except Exception:  # logging must never break mail handling
        _report_failure(event)


def _report_failure(event: str) -> None:
    with contextlib.suppress(Exception):  # nowhere left to report to
        sys.stderr.write(f"hardmail: could not log event {event!r}\n")


class EventLogger:
    """Fields bound once (session id, peer, listener), then added to every event it logs."""

    __slots__ = ("_bound",)

    def __init__(self, **bound: Any) -> None:
        self._bound = bound

    def bind(self, **more: Any) -> EventLogger:
        return EventLogger(**{**self._bound, **more})

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        _emit(event, level, {**self._bound, **fields})

    def __repr__(self) -> str:  # keys only: a bound value could be sensitive
        return f"EventLogger(bound={sorted(self._bound)})"


# --- formatting and configuration ----------------------------------------------------------


def _record_payload(record: logging.LogRecord) -> dict[str, Any]:
    """The event of an event record; a plain stdlib record wrapped as event ``log``."""
    payload = getattr(record, _EVENT_ATTR, None)
    if isinstance(payload, dict):
        return payload
    wrapped: dict[str, Any] = {
        "ts": utc_timestamp(record.created), "level": record.levelname.lower(),
        "event": "log", "logger": record.name, "message": record.getMessage(),
    }
    if record.exc_info:
        wrapped["exception"] = logging.Formatter().formatException(record.exc_info)
    return wrapped


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if isinstance(getattr(record, _EVENT_ATTR, None), dict):
            return record.getMessage()
        return json.dumps(_record_payload(record), ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``2026-11-29T15:00:00.123Z INFO  smtp.rcpt session=abc peer=1.2.3.4``."""

    def format(self, record: logging.LogRecord) -> str:
        payload = _record_payload(record)
        head = f"{payload['ts']} {str(payload['level']).upper():<5} {payload['event']}"
        rest = [f"{key}={_console_value(value)}" for key, value in payload.items()
                if key not in CORE_KEYS]
        return " ".join([head, *rest])


def _console_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in ' "=\\\n\r\t'):
        return value
    return json.dumps(value, ensure_ascii=False)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (daemons and tests replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        return None


def _make_handler(file: Path | None) -> logging.Handler:
    if file is None:
        return _CurrentStderrHandler()
    file.parent.mkdir(parents=True, exist_ok=True)
    # WatchedFileHandler reopens the file after logrotate moves it.
    return logging.handlers.WatchedFileHandler(file, encoding="utf-8")


def configure_logging(section: LoggingSection) -> None:
    """Install the one hardmail handler (replacing an earlier one) with format, level and target."""
    handler = _make_handler(section.file)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(ConsoleFormatter() if section.format == "console" else JsonFormatter())
    remove_configured_handler()
    _root.addHandler(handler)
    _root.setLevel(LEVELS.get(section.level, logging.INFO))


def remove_configured_handler() -> None:
    """Undo configure_logging's handler (tests, shutdown); the level is left as it is."""
    for old in [h for h in _root.handlers if h.get_name() == _HANDLER_NAME]:
        _root.removeHandler(old)
        old.close()
