"""Differential IMAP runs: the same command scripts sent to two servers over real sockets, the
responses collected completely (literals included), normalised (:mod:`support.imap_normalise`)
and compared step by step.

A script is a :class:`Scenario`: steps on one or more connections (``Cmd``, ``Idle``/``Wait``/
``Done`` for IDLE, ``Raw`` for bytes that are not a well-formed command). In a command,
``$USER``/``$PASS`` become the server's quoted user and password, ``$PLAIN`` the base64 SASL
PLAIN response, ``$UIDVALIDITY``/``$HIGHESTMODSEQ`` the last such value the server sent. A
synchronizing literal ``{n}\\r\\n`` inside a command is sent after the server's ``+``; a ``{n+}``
one at once.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import re
import socket
import ssl
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from support.imap_normalise import Context, Response, finish, normalise_command, parse_response

TIMEOUT = 15.0
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
_SYNC_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


@dataclass(frozen=True)
class Target:
    """One server: where it listens and the account a scenario uses there."""

    name: str
    host: str
    imap_port: int
    imaps_port: int
    tls: ssl.SSLContext
    user: str
    password: str
    source: str | None = None  # client address (Dovecot counts client IP == server IP as secured)


@dataclass(frozen=True)
class Cmd:
    text: str | bytes
    conn: int = 0
    expect: str = "OK"  # the tagged status the scenario expects from a correct server


@dataclass(frozen=True)
class Raw:
    """Bytes sent as they are; the responses up to the first tagged or BYE/BAD one are read."""

    data: bytes
    conn: int = 0
    expect: str = "BAD"


@dataclass(frozen=True)
class Idle:
    conn: int


@dataclass(frozen=True)
class Wait:
    """Read untagged responses on ``conn`` until one matches ``pattern`` (e.g. rb"EXISTS")."""

    conn: int
    pattern: bytes


@dataclass(frozen=True)
class Done:
    conn: int


@dataclass(frozen=True)
class Auth:
    """AUTHENTICATE ``mechanism`` (PLAIN or SCRAM-SHA-256, ``initial``: SASL-IR), answering each ``+``."""

    mechanism: str
    conn: int = 0
    initial: bool = False
    password: str | None = None  # None: the target's password
    expect: str = "OK"


Step = Cmd | Raw | Idle | Wait | Done | Auth


@dataclass(frozen=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    connections: int = 1
    port: Literal["imaps", "imap"] = "imaps"
    login: bool = True  # each connection starts with LOGIN (not compared when it succeeded)
    why: str = ""  # where hardmail differs from Dovecot on purpose, and why
    # (step index, hardmail's expected status) of the steps where it differs on purpose: their
    # responses are not compared, their status is checked
    differs: tuple[tuple[int, str], ...] = ()


@dataclass
class StepResult:
    label: str
    responses: list[Response]
    expect: str

    @property
    def status(self) -> str:
        tagged = [r for r in self.responses if r.kind not in ("*", "+")]
        if tagged:
            return tagged[-1].status
        if any(r.kind == "+" for r in self.responses):
            return "+"
        final = [r.status for r in self.responses if r.status in ("BAD", "BYE")]
        return final[-1] if final else ""


class ImapWire:
    """A minimal raw IMAP client: tagged commands out, complete responses in."""

    def __init__(self, target: Target, port: Literal["imaps", "imap"]) -> None:
        number = target.imaps_port if port == "imaps" else target.imap_port
        source = (target.source, 0) if target.source else None
        raw = socket.create_connection((target.host, number), timeout=TIMEOUT, source_address=source)
        self.sock: socket.socket = target.tls.wrap_socket(raw) if port == "imaps" else raw
        self.target = target
        self.buffer = b""
        self.tags = 0
        self.greeting = self.read_response()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line, self.buffer = self.buffer[:end + 2], self.buffer[end + 2:]
        return line

    def read_response(self) -> Response:
        data = self._line()
        while (match := _LITERAL_AT_END.search(data)) is not None:
            size = int(match.group(1))
            while len(self.buffer) < size:
                self._fill()
            data += self.buffer[:size]
            self.buffer = self.buffer[size:]
            data += self._line()
        return parse_response(data)

    def next_tag(self) -> str:
        self.tags += 1
        return f"c{self.tags}"

    def command(self, tag: str, text: bytes) -> list[Response]:
        """Send ``tag text``; wait for ``+`` at each synchronizing literal; read to the tagged reply."""
        out: list[Response] = []
        pieces = _split_literals(tag.encode() + b" " + text + b"\r\n")
        for index, piece in enumerate(pieces):
            self.sock.sendall(piece)
            if index == len(pieces) - 1:
                break
            response = self.read_response()
            out.append(response)
            while response.kind == "*":
                response = self.read_response()
                out.append(response)
            if response.kind != "+":
                return out  # refused before the literal was sent
        return out + self.until_tagged(tag)

    def until_tagged(self, tag: str) -> list[Response]:
        out = []
        while True:
            response = self.read_response()
            out.append(response)
            if response.kind == tag:
                return out

    def upgrade(self) -> None:
        assert not self.buffer, "data after the STARTTLS reply"
        self.sock = self.target.tls.wrap_socket(self.sock)


def _split_literals(data: bytes) -> list[bytes]:
    """Cut after each synchronizing literal's ``{n}\\r\\n`` (the server's ``+`` comes between)."""
    pieces, start, pos = [], 0, 0
    while (match := _SYNC_LITERAL.search(data, pos)) is not None:
        pieces.append(data[start:match.end()])
        start = match.end()
        pos = start + int(match.group(1))
    pieces.append(data[start:])
    return pieces


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_CAPTURED = re.compile(rb"\$(UIDVALIDITY|HIGHESTMODSEQ)(?:@(\d+))?(?:\+(\d+))?")


def _substitute(text: str | bytes, target: Target, seen: dict[str, list[str]]) -> bytes:
    """Fill in the placeholders; ``$NAME@N`` is the Nth value of NAME the server sent (from 1),
    ``$NAME@N+K`` that plus K."""
    data = text.encode() if isinstance(text, str) else text
    plain = base64.b64encode(f"\0{target.user}\0{target.password}".encode()).decode()
    values = {"$USER": quoted(target.user), "$PASS": quoted(target.password), "$PLAIN": plain}
    for name, value in values.items():
        data = data.replace(name.encode(), value.encode())

    def captured(match: re.Match[bytes]) -> bytes:
        history = seen.get(match.group(1).decode(), ["1"])
        index = int(match.group(2)) - 1 if match.group(2) else -1
        value = int(history[min(index, len(history) - 1)]) + int(match.group(3) or 0)
        return str(value).encode()

    return _CAPTURED.sub(captured, data)


def _remember(responses: Sequence[Response], seen: dict[str, list[str]]) -> None:
    for response in responses:
        code = response.code or []
        if len(code) >= 2 and str(code[0]).upper() in ("UIDVALIDITY", "HIGHESTMODSEQ"):
            seen.setdefault(str(code[0]).upper(), []).append(str(code[1]))


@dataclass
class Transcript:
    target: str
    greetings: list[Response] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)

    def normalised(self, skip: frozenset[int] = frozenset()) -> list[str]:
        """``label`` then its normalised responses, one per line, for every step (but ``skip``)."""
        ctx = Context(now=datetime.datetime.now(datetime.UTC))
        lines = [f"greeting: {line}" for line in normalise_command(self.greetings[:1], ctx)]
        for index, step in enumerate(self.steps):
            lines.append(f"> {step.label}")
            command = step.label.split("] ", 1)[-1]
            normalised = normalise_command(step.responses, ctx, command)  # also when skipped: same numbering
            if index in skip:
                lines.append("  (not compared: differs on purpose)")
                continue
            lines += [f"  {part}" for line in normalised for part in line.split("\n")]
        return finish(lines)


def run_scenario(scenario: Scenario, target: Target) -> Transcript:
    """Run every step of ``scenario`` against ``target``; each connection is closed at the end."""
    transcript = Transcript(target.name)
    wires: list[ImapWire] = []
    seen: dict[str, list[str]] = {}
    idle_tags: dict[int, str] = {}
    try:
        for _ in range(scenario.connections):
            wire = ImapWire(target, scenario.port)
            wires.append(wire)
            transcript.greetings.append(wire.greeting)
            if scenario.login:
                tag = wire.next_tag()
                login = wire.command(tag, _substitute("LOGIN $USER $PASS", target, seen))
                if login[-1].status != "OK":
                    raise AssertionError(f"{target.name}: LOGIN failed: {login[-1]}")
        for step in scenario.steps:
            transcript.steps.append(_run_step(step, wires, target, seen, idle_tags))
    finally:
        for wire in wires:
            wire.close()
    return transcript


def _run_step(step: Step, wires: list[ImapWire], target: Target, seen: dict[str, list[str]],
              idle_tags: dict[int, str]) -> StepResult:
    wire = wires[step.conn]
    if isinstance(step, Cmd):
        tag = wire.next_tag()
        data = _substitute(step.text, target, seen)
        responses = wire.command(tag, data)
        _remember(responses, seen)
        label = step.text if isinstance(step.text, str) else step.text.decode("utf-8", "replace")
        if data.upper() == b"STARTTLS" and responses[-1].status == "OK":
            wire.upgrade()
        return StepResult(f"[{step.conn}] {_short(label)}", responses, step.expect)
    if isinstance(step, Raw):
        wire.sock.sendall(step.data)
        responses = [wire.read_response()]
        while responses[-1].kind in ("*", "+") and responses[-1].status not in ("BAD", "BYE"):
            responses.append(wire.read_response())
        return StepResult(f"[{step.conn}] raw {step.data!r}", responses, step.expect)
    if isinstance(step, Auth):
        return _authenticate(step, wire, target)
    if isinstance(step, Idle):
        tag = idle_tags[step.conn] = wire.next_tag()
        wire.sock.sendall(f"{tag} IDLE\r\n".encode())
        responses = [wire.read_response()]
        while responses[-1].kind == "*":
            responses.append(wire.read_response())
        return StepResult(f"[{step.conn}] IDLE", responses, "+")
    if isinstance(step, Wait):
        responses = [wire.read_response()]
        while not re.search(step.pattern, _raw_text(responses[-1])):
            responses.append(wire.read_response())
        return StepResult(f"[{step.conn}] wait for {step.pattern.decode()}", responses, "")
    wire.sock.sendall(b"DONE\r\n")
    return StepResult(f"[{step.conn}] DONE", wire.until_tagged(idle_tags.pop(step.conn)), "OK")


def _authenticate(step: Auth, wire: ImapWire, target: Target) -> StepResult:
    password = target.password if step.password is None else step.password
    answers = _sasl_answers(step.mechanism, target.user, password)
    tag = wire.next_tag()
    first = next(answers)
    line = f"{tag} AUTHENTICATE {step.mechanism}" + (f" {_b64(first)}" if step.initial else "")
    wire.sock.sendall(line.encode() + b"\r\n")
    pending: bytes | None = None if step.initial else first
    responses: list[Response] = []
    while True:
        response = wire.read_response()
        responses.append(response)
        if response.kind == tag:
            break
        if response.kind == "+":
            if pending is None:
                challenge = base64.b64decode(response.text) if response.text else b""
                pending = answers.send(challenge)
            wire.sock.sendall(base64.b64encode(pending) + b"\r\n")  # an empty answer is an empty line
            pending = None
    label = f"[{step.conn}] AUTHENTICATE {step.mechanism}" + (" (initial response)" if step.initial else "")
    return StepResult(label, responses, step.expect)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def _sasl_answers(mechanism: str, user: str, password: str) -> Generator[bytes, bytes, None]:
    """The client's SASL messages; each ``send`` gives it the server's decoded challenge."""
    if mechanism.upper() == "PLAIN":
        yield f"\0{user}\0{password}".encode()
        while True:
            yield b""
    import scramp

    client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    server_first = yield client.get_client_first().encode()
    client.set_server_first(server_first.decode())
    server_final = yield client.get_client_final().encode()
    with contextlib.suppress(scramp.ScramException):  # the server's tagged reply says how it ended
        client.set_server_final(server_final.decode())
    while True:
        yield b""


def _raw_text(response: Response) -> bytes:
    from support.imap_normalise import render_list

    return render_list(response.values).encode()


def _short(label: str) -> str:
    """The command without its literals' contents (an APPEND shows its size only)."""
    if "\r\n" in label:
        label = label.split("\r\n", 1)[0] + " ..."
    return label if len(label) <= 160 else label[:150] + f"... ({len(label)} chars)"


def unexpected_statuses(transcript: Transcript) -> list[str]:
    """Steps whose tagged status is not what the scenario expects (for checking the scripts)."""
    return [f"{step.label}: expected {step.expect}, got {step.status or 'nothing'}: "
            f"{[r.text or r.values for r in step.responses][-3:]}"
            for step in transcript.steps if step.expect and step.status != step.expect]


def compare(scenario: Scenario, first: Transcript, second: Transcript) -> str:
    """An empty string when both normalised transcripts are equal, else a unified diff."""
    import difflib

    skip = frozenset(index for index, _ in scenario.differs)
    a, b = first.normalised(skip), second.normalised(skip)
    wrong = [f"step {index} ({second.steps[index].label}): expected {status}, got {second.steps[index].status}"
             for index, status in scenario.differs if second.steps[index].status != status]
    if a == b and not wrong:
        return ""
    if a == b:
        return f"scenario {scenario.name} ({scenario.why}):\n" + "\n".join(wrong)
    diff = difflib.unified_diff(a, b, first.target, second.target, lineterm="", n=2)
    return f"scenario {scenario.name}:\n" + "\n".join(diff)
