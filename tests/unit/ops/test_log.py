"""Structured logging: one JSON object per event line, redaction, console form, levels, targets."""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path

import pytest

from hardmail.config.schema import LoggingSection
from hardmail.ops import log
from hardmail.ops.log import EventLogger, configure_logging, log_event

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def events(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == log.EVENTS_LOGGER_NAME]


def configure(**settings: object) -> None:
    configure_logging(LoggingSection.model_validate(settings))


def test_event_is_one_json_record(caplog: pytest.LogCaptureFixture) -> None:
    log_event("smtp.rcpt", session="abc", peer="192.0.2.1", count=3)
    [event] = events(caplog)
    assert list(event)[:3] == ["ts", "level", "event"]
    assert TS.fullmatch(str(event["ts"]))
    assert event | {"ts": None} == {
        "ts": None, "level": "info", "event": "smtp.rcpt", "session": "abc",
        "peer": "192.0.2.1", "count": 3,
    }


def test_json_handler_writes_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure(format="json")
    log_event("smtp.connect", peer="192.0.2.1")
    log_event("smtp.reject", level="warning", reason="multi\nline")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["smtp.connect", "smtp.reject"]
    assert json.loads(lines[1])["reason"] == "multi\nline"


@pytest.mark.parametrize("key", [
    "password", "PASSWORD", "new_passwd", "client_secret", "api_token", "credentials",
    "auth_data", "Authorization", "key_material", "sasl_response",
])
def test_secret_fields_are_redacted(caplog: pytest.LogCaptureFixture, key: str) -> None:
    log_event("smtp.auth", **{key: "hunter2", "user": "ann"})
    [event] = events(caplog)
    assert event[key] == "[redacted]" and event["user"] == "ann"
    assert "hunter2" not in caplog.text


def test_nested_and_bound_secrets_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "correct horse battery staple"
    session = EventLogger(session="s1", password=secret).bind(peer="::1")
    session.event("smtp.auth", detail={"mechanism": "PLAIN", "sasl_response": secret}, items=[{"token": secret}])
    [event] = events(caplog)
    assert event["detail"] == {"mechanism": "PLAIN", "sasl_response": "[redacted]"}
    assert event["items"] == [{"token": "[redacted]"}]
    encoded = base64.b64encode(secret.encode()).decode()
    assert secret not in caplog.text and encoded not in caplog.text


def test_event_logger_binds_and_call_fields_win(caplog: pytest.LogCaptureFixture) -> None:
    base = EventLogger(session="s1", listener="mx")
    child = base.bind(peer="192.0.2.7")
    child.event("smtp.mail", level="debug", listener="override")
    base.event("smtp.disconnect")
    caplog.set_level(logging.DEBUG, logger=log.EVENTS_LOGGER_NAME)
    child.event("smtp.mail", level="debug", listener="override")
    first, second = events(caplog)
    assert first["event"] == "smtp.disconnect" and "peer" not in first
    assert (second["session"], second["peer"], second["listener"]) == ("s1", "192.0.2.7", "override")
    assert "hunter" not in repr(EventLogger(password="hunter2"))


def test_unserialisable_values_become_text(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    log_event("x", path=Path("/a/b"), raw=b"\x00", obj=Broken(), nan=float("nan"), tags={"a"})
    [event] = events(caplog)
    assert event["path"] == "/a/b" and event["raw"] == "b'\\x00'"
    assert event["obj"] == "<unprintable Broken>" and event["nan"] == "nan" and event["tags"] == ["a"]


def test_fields_never_replace_core_keys(caplog: pytest.LogCaptureFixture) -> None:
    EventLogger(event="bound", level="error").event("smtp.tls", ts="yesterday")
    [event] = events(caplog)
    assert (event["event"], event["level"]) == ("smtp.tls", "info")
    assert (event["event_"], event["level_"], event["ts_"]) == ("bound", "error", "yesterday")


def test_never_raises_even_for_odd_input(caplog: pytest.LogCaptureFixture) -> None:
    loop: list[object] = []
    loop.append(loop)
    log_event("x", level="nonsense", loop=loop, mapping={("tuple", "key"): 1})
    [event] = events(caplog)
    assert event["level"] == "info" and event["mapping"] == {"('tuple', 'key')": 1}


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure(format="console")
    log_event("smtp.rcpt", session="abc", peer="1.2.3.4", text="two words", n=2, password="x")
    line = capsys.readouterr().err.rstrip("\n")
    assert re.fullmatch(
        TS.pattern + r' INFO  smtp\.rcpt session=abc peer=1\.2\.3\.4 text="two words" n=2 password=\[redacted\]',
        line,
    ), line


def test_level_filtering(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="warning")
    log_event("quiet.info")
    log_event("loud.warning", level="warning")
    log_event("loud.error", level="error")
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["loud.warning", "loud.error"]


def test_reconfiguring_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure(format="console")
    configure(format="json")
    log_event("server.start")
    [line] = capsys.readouterr().err.splitlines()
    assert json.loads(line)["event"] == "server.start"


def test_file_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "logs" / "hardmail.log"
    configure(file=target)
    log_event("server.start", version="0.1.0")
    log.remove_configured_handler()
    [line] = target.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["version"] == "0.1.0"
    assert capsys.readouterr().err == ""


def test_plain_stdlib_records_are_wrapped(capsys: pytest.CaptureFixture[str]) -> None:
    configure()
    logging.getLogger("hardmail.store").warning("disk %s", "full")
    record = json.loads(capsys.readouterr().err)
    assert record | {"ts": None} == {
        "ts": None, "level": "warning", "event": "log", "logger": "hardmail.store", "message": "disk full",
    }
