"""Differential POP3 runs: the same command scripts sent to two servers over real sockets,
responses collected (multi-line ones up to the ``.`` line), normalised, compared.

Normalised: the text after ``+OK``/``-ERR`` and its ``[CODE]`` (free text), except for STAT,
``LIST n`` and ``UIDL n`` whose arguments are the data; UIDL values end in the folder's
UIDVALIDITY (``%08Xu%08Xv``), which becomes ``V1``...; CAPA lines are sorted, IMPLEMENTATION, EXPIRE, LOGIN-DELAY and
CAPA itself are left out (identity, optional), and the SASL line keeps only the mechanisms
hardmail offers (PLAIN, SCRAM-SHA-256). Message contents are compared
byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import re
import socket
from dataclasses import dataclass, field
from typing import Literal

from support.imap_diff import Target

TIMEOUT = 15.0
COMPARED_SASL = {"PLAIN", "SCRAM-SHA-256"}
_MULTILINE = {"CAPA", "RETR", "TOP"}
_DATA_REPLIES = {"STAT", "LIST", "UIDL"}


@dataclass(frozen=True)
class P:
    text: str
    expect: str = "+OK"


@dataclass(frozen=True)
class Reconnect:
    """End this session (without QUIT) and open a new one, logged in unless ``login`` is False."""

    port: Literal["pop3s", "pop3"] = "pop3s"
    login: bool = True


@dataclass(frozen=True)
class Pop3Scenario:
    name: str
    steps: tuple[P | Reconnect, ...]
    messages: int = 4  # how many of the fixed messages are put into INBOX first (over IMAP)
    port: Literal["pop3s", "pop3"] = "pop3s"
    login: bool = True  # the session starts with USER/PASS


@dataclass
class Pop3Step:
    label: str
    lines: list[bytes]
    expect: str

    @property
    def status(self) -> str:
        return "+OK" if self.lines and self.lines[0].startswith(b"+OK") else "-ERR"


class Pop3Wire:
    def __init__(self, target: Target, port_number: int, implicit_tls: bool) -> None:
        source = (target.source, 0) if target.source else None
        raw = socket.create_connection((target.host, port_number), timeout=TIMEOUT, source_address=source)
        self.sock: socket.socket = target.tls.wrap_socket(raw) if implicit_tls else raw
        self.target = target
        self.buffer = b""
        self.greeting = self.line()

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer[:end], self.buffer[end + 2:]
        return line

    def command(self, text: str) -> list[bytes]:
        self.sock.sendall(text.encode() + b"\r\n")
        first = self.line()
        lines = [first]
        verb, _, argument = text.partition(" ")
        multiline = verb.upper() in _MULTILINE or (verb.upper() in ("LIST", "UIDL") and not argument)
        if first.startswith(b"+OK") and multiline:
            while (line := self.line()) != b".":
                lines.append(line)
        if verb.upper() == "STLS" and first.startswith(b"+OK"):
            self.sock = self.target.tls.wrap_socket(self.sock)
        return lines

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _fill(text: str, target: Target) -> str:
    plain = base64.b64encode(f"\0{target.user}\0{target.password}".encode()).decode()
    return text.replace("$USER", target.user).replace("$PASS", target.password).replace("$PLAIN", plain)


def _open(target: Target, ports: tuple[int, int], port: str, login: bool) -> Pop3Wire:
    wire = Pop3Wire(target, ports[1] if port == "pop3s" else ports[0], port == "pop3s")
    if login:
        for text in ("USER $USER", "PASS $PASS"):
            reply = wire.command(_fill(text, target))
            if not reply[0].startswith(b"+OK"):
                raise AssertionError(f"{target.name}: {text.split()[0]} failed: {reply[0]!r}")
    return wire


@dataclass
class Pop3Transcript:
    target: str
    steps: list[Pop3Step] = field(default_factory=list)

    def normalised(self) -> list[str]:
        validities: dict[str, str] = {}
        out = []
        for step in self.steps:
            out.append(f"> {step.label}")
            out += [f"  {line}" for line in _normalise(step, validities)]
        return out


def run_pop3(scenario: Pop3Scenario, target: Target, ports: tuple[int, int]) -> Pop3Transcript:
    """Run ``scenario`` against ``target`` whose POP3 and POP3S ports are ``ports``."""
    transcript = Pop3Transcript(target.name)
    wire = _open(target, ports, scenario.port, scenario.login)
    transcript.steps.append(Pop3Step("greeting", [wire.greeting], "+OK"))
    try:
        for step in scenario.steps:
            if isinstance(step, Reconnect):
                wire.close()
                wire = _open(target, ports, step.port, step.login)
                transcript.steps.append(Pop3Step("new session", [wire.greeting], "+OK"))
                continue
            lines = wire.command(_fill(step.text, target))
            transcript.steps.append(Pop3Step(step.text, lines, step.expect))
    finally:
        wire.close()
    return transcript


_UIDL_LINE = re.compile(rb"^(\d+ )?([0-9A-Fa-f]{8})([0-9A-Fa-f]{8})$")


def _uidl(line: bytes, validities: dict[str, str]) -> str:
    match = _UIDL_LINE.match(line)
    if not match:
        return line.decode("utf-8", "backslashreplace")
    validity = validities.setdefault(match.group(3).decode().upper(), f"V{len(validities) + 1}")
    return f"{(match.group(1) or b'').decode()}{match.group(2).decode().upper()}{validity}"


def _status(line: bytes, verb: str, argument: str) -> str:
    status, _, rest = line.partition(b" ")
    code = re.match(rb"\[[^\]]*\]", rest)
    if verb in _DATA_REPLIES and status == b"+OK" and (verb == "STAT" or argument):
        return line.decode("utf-8", "backslashreplace") if verb != "UIDL" else "+OK " + _uidl(rest, {})
    return status.decode() + (f" {code.group(0).decode()}" if code else "")


def _normalise(step: Pop3Step, validities: dict[str, str]) -> list[str]:
    verb, _, argument = step.label.partition(" ")
    verb = verb.upper()
    head = _status(step.lines[0], verb, argument) if step.lines else "(nothing)"
    if verb == "UIDL" and argument and step.lines[0].startswith(b"+OK "):
        head = "+OK " + _uidl(step.lines[0][4:], validities)
    body = step.lines[1:]
    if verb == "CAPA":
        return [head, *sorted(capa for line in body if (capa := _capa(line)))]
    if verb == "UIDL":
        return [head, *[_uidl(line, validities) for line in body]]
    return [head, *[line.decode("utf-8", "backslashreplace") for line in body]]


_UNCOMPARED_CAPA = {"IMPLEMENTATION", "EXPIRE", "CAPA", "LOGIN-DELAY"}  # identity and optional (RFC 2449 6)


def _capa(line: bytes) -> str:
    words = line.decode("utf-8", "replace").upper().split()
    if words and words[0] in _UNCOMPARED_CAPA:
        return ""
    if words and words[0] == "SASL":
        return " ".join(["SASL", *sorted(set(words[1:]) & COMPARED_SASL)])
    return " ".join(words)


def unexpected(transcript: Pop3Transcript) -> list[str]:
    return [f"{step.label}: expected {step.expect}, got {step.lines[:1]!r}"
            for step in transcript.steps if step.status != step.expect]


def compare_pop3(name: str, first: Pop3Transcript, second: Pop3Transcript) -> str:
    a, b = first.normalised(), second.normalised()
    if a == b:
        return ""
    return f"scenario {name}:\n" + "\n".join(difflib.unified_diff(a, b, first.target, second.target,
                                                                 lineterm="", n=2))
