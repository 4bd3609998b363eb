"""Structured logging: one JSON object per line per event, and never a secret in it.

Every event goes through the stdlib logger ``hardmail.events`` as one record whose message is the
complete JSON line (``{"ts": ..., "level": ..., "event": ..., <fields>}``), so any stdlib handler,
including pytest's ``caplog``, sees exactly what is written. ``configure_logging`` installs the one
handler that writes those lines (or readable console lines) to standard error or a file.

That handler keeps the SMTP hot path to one write per event-loop turn: in a thread running an
asyncio loop, the lines of one turn are collected and written together by a ``call_soon`` callback
(at once past 64 KiB). Warnings and errors, and lines from threads without a running loop, are
written at once, after whatever is pending, so the order of lines is kept. ``flush()``, ``close()``
and an ``atexit`` hook write pending lines; a SIGKILL loses at most the current turn's lines. The
file target (:mod:`hardmail.ops.logfile`: mode 0600 whatever the umask) is reopened when logrotate
moved it, checked once per write rather than per line.

Field values under secret-looking keys are replaced by ``[redacted]``; callers must still never
pass protocol payloads of AUTH. The formatting is hand-written rather than structlog because the
contract above (the record message *is* the JSON line) is a few dozen lines on top of stdlib.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import logging
import math
import os
import select
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from hardmail.config.schema import LoggingSection
from hardmail.ops.log_limit import SourceLimiter, Suppressed
from hardmail.ops.logfile import WatchedFile, access_for
from hardmail.policy.bans import address_key, subnet_of

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
RECENT_ERRORS = 10  # error-level events this process remembers for `hardmail status`
_recent_errors: deque[dict[str, Any]] = deque(maxlen=RECENT_ERRORS)

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
    """Log one event with its fields as one JSON line. Never raises. An event that names a client
    (a ``peer`` field) counts against that client's rate limit (see ``configure_logging``)."""
    if _limiter is not None and not _source_admits(event, level, _source_of(fields), fields):
        return
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
        if numeric >= logging.ERROR:
            _recent_errors.append(payload)
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
        parts = [f'{{"ts": "{ts}", "level": "{name}", "event": {_encode_str(text)}', bound.json_items]
        if clean:
            parts.append(_ENCODER.encode(clean)[1:-1])
        line = ", ".join(filter(None, parts)) + "}"
        if numeric >= logging.ERROR:
            _recent_errors.append({"ts": ts, "level": name, "event": text, **bound.clean, **clean})
        direct = _direct_handler(numeric)
        if direct is not None:
            direct.emit_line(line, numeric)
            return
        _handle(numeric, line, {"ts": ts, "level": name, "event": text, **bound.clean, **clean})
    except Exception:  # logging must never break mail handling
        _report_failure(event)


def recent_errors() -> list[dict[str, Any]]:
    """The last error-level events of this process (already cleaned of secrets), oldest first."""
    return list(_recent_errors)


def _direct_handler(numeric: int) -> _TurnBatchingHandler | None:
    """The configured JSON handler when it is the only place a record would reach (no other
    handler or filter on the way, nothing on the root logger, as under pytest's caplog): the
    line then goes straight to it, without a LogRecord. None means: take the stdlib path."""
    handlers = _root.handlers
    if len(handlers) != 1 or _events.handlers or _events.filters or _root.filters or not _events.propagate:
        return None
    handler = handlers[0]
    if type(handler) is not _TurnBatchingHandler or not handler.json or handler.filters or numeric < handler.level:
        return None
    if _root.propagate and logging.root.handlers:
        return None
    return handler


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
    """Fields bound once (session id, peer, listener), then added to every event it logs. With a
    ``peer`` bound, its events count against that client's rate limit (see ``configure_logging``)."""

    __slots__ = ("_bound", "_serialized", "_source")

    def __init__(self, **bound: Any) -> None:
        self._bound = bound
        self._serialized = BoundFields(bound) if BoundFields.usable(bound) else None
        self._source = _source_of(bound)

    def bind(self, **more: Any) -> EventLogger:
        return EventLogger(**{**self._bound, **more})

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        if _limiter is not None and not _source_admits(event, level, _source_of(fields) or self._source, fields):
            return
        serialized = self._serialized
        if serialized is not None and serialized.names.isdisjoint(fields):
            _emit_bound(event, level, serialized, fields)
        else:
            _emit(event, level, {**self._bound, **fields})

    def __repr__(self) -> str:  # keys only: a bound value could be sensitive
        return f"EventLogger(bound={sorted(self._bound)})"


# --- the per-source rate limit ----------------------------------------------------------------

_limiter: SourceLimiter | None = None  # set by configure_logging; None writes every line
# Lines a client cannot repeat without succeeding at something: never limited.
_ALWAYS_WRITTEN = frozenset({("smtp.accept", None), ("smtp.auth", "success"), ("auth.login", "success"),
                             ("log.suppressed", None)})
_CLIENT_FIELDS = ("peer", "client_ip")  # the fields that name the client a line is about
_Source = tuple[str, str | None]  # the client's source key, its subnet


@functools.lru_cache(maxsize=4096)
def source_key(ip: str) -> _Source:
    """The source lines are counted by (an IPv4 address or an IPv6 /64, as bans count them) and
    its subnet (/24, /48); a text that is no address is a source of its own, without a subnet."""
    try:
        return address_key(ip), subnet_of(ip)
    except ValueError:
        return ip, None


def _source_of(fields: Mapping[str, Any]) -> _Source | None:
    """The client an event names (its ``peer`` or ``client_ip`` field), as a source key."""
    for name in _CLIENT_FIELDS:
        value = fields.get(name)
        if type(value) is str:
            return source_key(value)
    return None


def _source_admits(event: str, level: str, source: _Source | None, fields: Mapping[str, Any]) -> bool:
    """Whether the limiter lets this line through; writes the summaries of windows that ended."""
    limiter = _limiter
    try:
        numeric = _numeric_level(level)
        if (limiter is None or source is None or (event, None) in _ALWAYS_WRITTEN
                or (event, fields.get("result")) in _ALWAYS_WRITTEN or not _events.isEnabledFor(numeric)):
            return True
        admitted, ended = limiter.admit(event, source[0], numeric, source[1])
        for summary in ended:
            _write_summary(summary)
        if not admitted:
            limiter.write_when_ended(_write_summary)  # even if no other line comes
        return admitted
    except Exception:  # logging must never break mail handling
        return True


def _write_summary(summary: Suppressed) -> None:
    where = {"subnet": summary.source} if summary.subnet else {"peer": summary.source}
    log_event("log.suppressed", level=_LEVEL_NAMES.get(max(summary.level, logging.INFO), "info"),
              suppressed_event=summary.event, **where, count=summary.count, seconds=round(summary.seconds, 1))


def _write_pending_summaries() -> None:
    if _limiter is not None:
        for summary in _limiter.pending():
            _write_summary(summary)


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


# --- writing: at most one write per event-loop turn --------------------------------------------

_BATCH_LIMIT = 64 * 1024  # characters collected before they are written without waiting for the turn's end
# Bytes one write may carry: POSIX keeps a pipe write of at most PIPE_BUF bytes whole, so worker
# processes that share standard error (or a log file) never interleave parts of their lines.
_ATOMIC_WRITE = select.PIPE_BUF
_running_loop = asyncio.events._get_running_loop  # the loop running in this thread or None, without raising


class _Target(Protocol):
    def write(self, text: str) -> None: ...

    def close(self) -> None: ...


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (daemons and tests replace it)."""

    def write(self, text: str) -> None:
        stream = sys.stderr
        stream.write(text)
        stream.flush()

    def close(self) -> None:
        return None


class _TurnBatchingHandler(logging.Handler):
    """Writes formatted lines to a target, collecting the lines of one event-loop turn into one write.

    In a thread with a running asyncio loop, a line waits in a batch that a ``loop.call_soon``
    callback writes at the end of the turn (or at once past ``_BATCH_LIMIT`` characters). A record at
    warning or above, or one from a thread without a running loop, is written at once, after the
    pending batch so that lines keep their order. Everything happens under the handler lock.
    """

    def __init__(self, target: _Target) -> None:
        super().__init__()
        self._target = target
        self._pending: list[str] = []
        self._pending_size = 0
        self._turn_loop: asyncio.AbstractEventLoop | None = None  # loop with a queued _write_turn

    @property
    def json(self) -> bool:
        """Its formatter writes an event record's message as it is (so a line can skip the record)."""
        return type(self.formatter) is JsonFormatter

    def emit_line(self, text: str, levelno: int) -> None:
        """What handle() does for an event record whose formatted text is ``text``."""
        self.acquire()
        try:
            self._add(text + "\n", levelno)
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._add(line, record.levelno)

    def _add(self, line: str, levelno: int) -> None:
        """Queue ``line`` for this turn's write, or write it at once (see the class docstring)."""
        at_once = levelno >= logging.WARNING or not self._batching_this_turn()
        self._pending.append(line)
        self._pending_size += len(line)
        if at_once or self._pending_size > _BATCH_LIMIT:
            self._write_pending()

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            self._write_pending()
            self._turn_loop = None
            self._target.close()
        finally:
            self.release()
        super().close()

    def _batching_this_turn(self) -> bool:
        """Whether the current thread runs a loop whose turn ends with a write of the batch;
        schedules that write if it is not scheduled yet. Called under the lock."""
        loop = _running_loop()
        if loop is None:
            return False
        if loop is self._turn_loop:
            return True
        self._write_pending()  # lines waiting for another loop's turn (another thread, a closed loop)
        try:
            loop.call_soon(self._write_turn, loop)
        except RuntimeError:
            return False
        self._turn_loop = loop
        return True

    def _write_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        self.acquire()
        try:
            if self._turn_loop is loop:  # else a stale callback: another loop took the batch over
                self._turn_loop = None
                self._write_pending()
        finally:
            self.release()

    def forget_pending(self) -> None:
        """Drop the pending lines without writing them: in a forked child, the parent writes them."""
        self._pending.clear()
        self._pending_size = 0
        self._turn_loop = None

    def _write_pending(self) -> None:
        """One write of every pending line. Called under the lock."""
        if not self._pending:
            return
        lines = self._pending
        self._pending = []
        self._pending_size = 0
        try:
            for piece in whole_line_pieces(lines, _ATOMIC_WRITE):
                self._target.write(piece)
            if isinstance(self._target, WatchedFile):
                self._write_notices(self._target)
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "%d log line(s) not written", "args": (len(lines),)}))

    def _write_notices(self, target: WatchedFile) -> None:
        """The file's own warnings (a looser mode found at start or after a rotation), as events."""
        for notice in target.take_notices():
            payload = build_event("log.file_mode", "warning", {"detail": notice})
            record = logging.makeLogRecord({"msg": _ENCODER.encode(payload), "levelno": logging.WARNING,
                                            "levelname": "WARNING", _EVENT_ATTR: payload})
            target.write(self.format(record) + "\n")


def whole_line_pieces(lines: list[str], limit: int) -> Iterator[str]:
    """``lines`` joined into pieces of whole lines of at most ``limit`` UTF-8 bytes each (a longer
    line is a piece of its own)."""
    piece: list[str] = []
    size = 0
    for line in lines:
        length = len(line) if line.isascii() else len(line.encode("utf-8"))
        if piece and size + length > limit:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += length
    if piece:
        yield "".join(piece)


def _make_handler(section: LoggingSection) -> _TurnBatchingHandler:
    if section.file is None:
        return _TurnBatchingHandler(_CurrentStderr())
    access = access_for(section.file_group)
    return _TurnBatchingHandler(WatchedFile(section.file, access, section.file_group))


def configure_logging(section: LoggingSection, clock: Callable[[], float] = time.monotonic) -> None:
    """Install the one hardmail handler (replacing an earlier one) with format, level and target,
    and the per-source rate limit (``clock`` is its time, injected by tests)."""
    global _limiter
    handler = _make_handler(section)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(ConsoleFormatter() if section.format == "console" else JsonFormatter())
    remove_configured_handler()
    _root.addHandler(handler)
    _root.setLevel(LEVELS.get(section.level, logging.INFO))
    burst, interval = section.per_source_burst, section.per_source_interval
    _limiter = (SourceLimiter(burst, interval, clock, subnet_burst=section.per_subnet_burst)
                if burst > 0 else None)


def remove_configured_handler() -> None:
    """Undo configure_logging's handler and rate limit (tests, shutdown); the level is left as it is."""
    global _limiter
    _write_pending_summaries()
    _limiter = None
    for old in [h for h in _root.handlers if h.get_name() == _HANDLER_NAME]:
        _root.removeHandler(old)
        old.close()


def _configured_handlers() -> list[_TurnBatchingHandler]:
    return [h for h in _root.handlers if h.get_name() == _HANDLER_NAME and isinstance(h, _TurnBatchingHandler)]


def _flush_configured_handlers() -> None:
    """Write what waits for the end of a loop turn that will not come (normal interpreter exit)."""
    _write_pending_summaries()
    for handler in _configured_handlers():
        handler.flush()


def _forget_pending_after_fork() -> None:
    """In a forked child: the parent writes its own pending lines and summaries."""
    for handler in _configured_handlers():
        handler.forget_pending()
    if _limiter is not None:
        _limiter.pending()  # the parent's counts and timers, dropped: the parent writes their summaries


atexit.register(_flush_configured_handlers)
os.register_at_fork(after_in_child=_forget_pending_after_fork)
