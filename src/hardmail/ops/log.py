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
import functools
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
# Keys that take the general path of build_event (a core key is renamed, which could collide).
_RENAMING_KEYS = frozenset((*CORE_KEYS, *(f"{key}_" for key in CORE_KEYS)))
_PLAIN_TYPES = (str, int, bool)
_LEVEL_NAMES = {number: logging.getLevelName(number).lower() for number in set(LEVELS.values())}
# One encoder for every line: json.dumps with a keyword argument would build a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_encode_str = json.encoder.encode_basestring  # the string form _ENCODER (ensure_ascii=False) uses

_events = logging.getLogger(EVENTS_LOGGER_NAME)
_root = logging.getLogger(ROOT_LOGGER_NAME)
if _root.level == logging.NOTSET:
    # Events at info are the point of this module: keep them even before configure_logging.
    _root.setLevel(logging.INFO)


# --- building one event --------------------------------------------------------------------


def utc_timestamp(seconds: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-29T15:00:00.123Z``."""
    moment = time.time() if seconds is None else seconds
    whole = math.floor(moment)
    micros = round((moment - whole) * 1_000_000)  # rounded as datetime.fromtimestamp does
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{_second_prefix(whole)}.{micros // 1000:03d}Z"


@functools.lru_cache(maxsize=4)
def _second_prefix(whole_seconds: int) -> str:
    """``2026-11-29T15:00:00`` for one second: formatted once, not per event."""
    return datetime.fromtimestamp(whole_seconds, UTC).isoformat()[:19]


@functools.lru_cache(maxsize=2048)
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


def clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``clean_value`` of a top-level field mapping, with plain values taken as they are."""
    clean: dict[str, Any] = {}
    for key, value in fields.items():
        name = str(key)
        if is_secret_key(name):
            clean[name] = REDACTED
        elif value is None or type(value) in _PLAIN_TYPES:
            clean[name] = value
        else:
            clean[name] = clean_value(value, 1)
    return clean


def build_event(event: str, level: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object for one event; a field never replaces ts, level or event."""
    payload: dict[str, Any] = {"ts": utc_timestamp(), "level": level, "event": str(event)}
    for key, value in clean_value(dict(fields)).items():
        payload[f"{key}_" if key in CORE_KEYS else key] = value
    return payload


# --- emitting ------------------------------------------------------------------------------


def log_event(event: str, *, level: str = "info", **fields: Any) -> None:
    """Log one event with its fields as one JSON line. Never raises."""
    if _RENAMING_KEYS.isdisjoint(fields):
        _emit_bound(event, level, _NOTHING_BOUND, fields)
    else:
        _emit(event, level, fields)


def _numeric_level(level: str) -> int:
    known = LEVELS.get(level) if type(level) is str else None
    return known or LEVELS.get(str(level).lower(), logging.INFO)


def _emit(event: str, level: str, fields: Mapping[str, Any]) -> None:
    """The general path: any field names, core keys renamed by build_event."""
    try:
        numeric = _numeric_level(level)
        if not _events.isEnabledFor(numeric):
            return
        payload = build_event(event, _LEVEL_NAMES[numeric], fields)
        _handle(numeric, _ENCODER.encode(payload), payload)
    except Exception:  # logging must never break mail handling
        _report_failure(event)


def _emit_bound(event: str, level: str, bound: BoundFields, fields: Mapping[str, Any]) -> None:
    """The common path: fields that neither rename nor replace a bound one; the bound fields'
    JSON is reused. Writes what _emit would write for ``{**bound, **fields}``."""
    try:
        numeric = _numeric_level(level)
        if not _events.isEnabledFor(numeric):
            return
        ts, name, text = utc_timestamp(), _LEVEL_NAMES[numeric], str(event)
        clean = clean_fields(fields)
        payload = {"ts": ts, "level": name, "event": text, **bound.clean, **clean}
        parts = [f'{{"ts": "{ts}", "level": "{name}", "event": {_encode_str(text)}', bound.json_items]
        if clean:
            parts.append(_ENCODER.encode(clean)[1:-1])
        _handle(numeric, ", ".join(filter(None, parts)) + "}", payload)
    except Exception:  # logging must never break mail handling
        _report_failure(event)


def _handle(numeric: int, line: str, payload: dict[str, Any]) -> None:
    """Hand one line to the stdlib machinery as Logger.log would, without looking up the caller's
    frame (the caller is always this module)."""
    record = _events.makeRecord(_events.name, numeric, __file__, 0, line, (), None, "_emit",
                                {_EVENT_ATTR: payload})
    _events.handle(record)


def _report_failure(event: str) -> None:
    with contextlib.suppress(Exception):  # nowhere left to report to
        sys.stderr.write(f"hardmail: could not log event {event!r}\n")


class BoundFields:
    """Bound fields cleaned and serialized once: plain values only (others may change later)."""

    __slots__ = ("clean", "json_items", "names")

    def __init__(self, bound: Mapping[str, Any]) -> None:
        self.clean = clean_fields(bound)
        self.json_items = _ENCODER.encode(self.clean)[1:-1]  # "k": v, ... without the braces
        self.names = frozenset(bound) | _RENAMING_KEYS  # event fields that take the general path

    @staticmethod
    def usable(bound: Mapping[str, Any]) -> bool:
        return _RENAMING_KEYS.isdisjoint(bound) and all(
            value is None or type(value) in _PLAIN_TYPES for value in bound.values())


_NOTHING_BOUND = BoundFields({})


class EventLogger:
    """Fields bound once (session id, peer, listener), then added to every event it logs."""

    __slots__ = ("_bound", "_serialized")

    def __init__(self, **bound: Any) -> None:
        self._bound = bound
        self._serialized = BoundFields(bound) if BoundFields.usable(bound) else None

    def bind(self, **more: Any) -> EventLogger:
        return EventLogger(**{**self._bound, **more})

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        serialized = self._serialized
        if serialized is not None and serialized.names.isdisjoint(fields):
            _emit_bound(event, level, serialized, fields)
        else:
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
