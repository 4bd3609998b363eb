"""docs/smtp.md shows the server's real EHLO replies and swaks's real output when AUTH is not
offered: the blocks marked ``<!-- ehlo: ... -->`` and ``<!-- swaks: ... -->`` are compared with a
running server with the default host name and size limit, so that the page cannot drift."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hardmail.config.schema import ServerSection, SmtpSection
from support.live import RawClient, ServerThread, require_program, running_server, server_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "smtp.md"
EHLO = "EHLO client.example"


def _blocks(kind: str) -> dict[str, list[str]]:
    """Marked name -> the lines of the fenced block after ``<!-- kind: name -->``."""
    pattern = re.compile(rf"<!-- {kind}: ([^>]+?) -->\n```\n(.*?)\n```", re.S)
    return {name: body.split("\n") for name, body in pattern.findall(DOC.read_text())}


def _ehlo_reply(block: list[str]) -> list[str]:
    """The reply lines to the block's EHLO (the last one sent), without swaks's ``<-``/``<~``."""
    start = max(i for i, line in enumerate(block) if line.strip().endswith(EHLO))
    reply = []
    for line in block[start + 1:]:
        reply.append(line[4:])
        if line[7:8] == " ":
            return reply
    raise AssertionError("the block's EHLO reply has no last line")


def _read_reply(client: RawClient) -> list[str]:
    lines = []
    while True:
        line = client.read_line().decode()
        lines.append(line)
        if line[3:4] != "-":
            return lines


def _server_ehlo(server: ServerThread, kind: str, after_tls: bool) -> list[str]:
    client = RawClient(server.address(kind), tls_on_connect=kind == "submissions")
    try:
        _read_reply(client)
        client.send(f"{EHLO}\r\n".encode())
        reply = _read_reply(client)
        if after_tls and kind != "submissions":
            client.send(b"STARTTLS\r\n")
            assert _read_reply(client)[0].startswith("220 ")
            client.starttls()
            client.send(f"{EHLO}\r\n".encode())
            reply = _read_reply(client)
        return reply
    finally:
        client.close()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = server_config(tmp_path_factory.mktemp("doc") / "data",
                           server={"hostname": ServerSection.model_fields["hostname"].default},
                           smtp={"max_message_size": SmtpSection.model_fields["max_message_size"].default})
    with running_server(config) as server:
        yield server


def test_the_page_has_the_marked_blocks() -> None:
    assert sorted(_blocks("ehlo")) == ["submission after-tls", "submission before-tls"]
    assert sorted(_blocks("swaks")) == ["smtp auth-not-offered"]


@pytest.mark.parametrize(("kind", "block"), [("submission", "submission before-tls"), ("smtp", "submission before-tls"),
                                             ("submission", "submission after-tls"),
                                             ("submissions", "submission after-tls")])
def test_ehlo_blocks_are_the_servers_replies(default_server: ServerThread, kind: str, block: str) -> None:
    expected = _ehlo_reply(_blocks("ehlo")[block])
    assert _server_ehlo(default_server, kind, after_tls=block.endswith("after-tls")) == expected


def test_mx_after_starttls_is_the_submission_list_without_auth(default_server: ServerThread) -> None:
    submission = _ehlo_reply(_blocks("ehlo")["submission after-tls"])
    assert submission[-1] == "250 AUTH PLAIN LOGIN SCRAM-SHA-256"
    assert _server_ehlo(default_server, "smtp", after_tls=True) == [*submission[:-2], "250 DSN"]


@pytest.mark.external
def test_swaks_output_when_auth_is_not_offered(default_server: ServerThread) -> None:
    swaks = require_program("swaks")
    block = _blocks("swaks")["smtp auth-not-offered"]
    command = " ".join(line.rstrip("\\").removeprefix("$ ") for line in block[:2])
    output, status = block[2:block.index("$ echo $?")], int(block[-1])
    host, port = default_server.address("smtp")
    args = shlex.split(command)[1:]
    args[args.index("--port") + 1] = str(port)
    ran = subprocess.run([swaks, *args], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == status == 28
    printed = (ran.stdout + ran.stderr).replace(f"{host}:{port}", f"{host}:2525").rstrip("\n").split("\n")
    assert [line.rstrip() for line in printed] == [line.rstrip() for line in output]
