"""docs/pop3.md's checks work: the two ``openssl s_client`` commands it shows (STLS on the pop3
port, implicit TLS on pop3s) log in and list the INBOX against a running server, and the plain
``nc`` exchange it shows is the server's real answer."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import ALICE, ALICE_PASSWORD, RawClient, ServerThread, require_program
from support.pop3 import pop3_server

DOC = (Path(__file__).resolve().parents[2] / "docs" / "pop3.md").read_text()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with pop3_server(tmp_path_factory.mktemp("pop3doc") / "data", messages=2) as server:
        yield server


@pytest.mark.parametrize(("shown", "kind"), [("-starttls pop3 -connect 127.0.0.1:2110", "pop3"),
                                             ("-connect 127.0.0.1:2995", "pop3s")])
def test_openssl_checks(live: ServerThread, shown: str, kind: str) -> None:
    assert f"openssl s_client -quiet {shown}" in DOC
    args = shown.replace(":2110", f":{live.address('pop3')[1]}").replace(":2995", f":{live.address('pop3s')[1]}")
    commands = f"USER {ALICE}\nPASS {ALICE_PASSWORD}\nSTAT\nLIST\nUIDL\nTOP 1 0\nQUIT\n"
    result = subprocess.run([require_program("openssl"), "s_client", "-quiet", *args.split()], input=commands,
                            capture_output=True, text=True, timeout=60, check=False)
    lines = result.stdout.splitlines()
    assert lines[-1] == "+OK Logging out.", result.stdout
    assert any(re.fullmatch(r"\+OK Logged in, 2 messages \(\d+ octets\)\.", line) for line in lines)
    assert any(re.fullmatch(r"1 [0-9A-F]{16}", line) for line in lines)


def test_plain_exchange_shown(live: ServerThread) -> None:
    block = DOC.split("$ nc 127.0.0.1 2110\n", 1)[1].split("```", 1)[0].splitlines()
    client = RawClient(live.address("pop3"))
    assert client.read_line().decode() == block[0]
    client.send(block[1].replace("alice@example.org", ALICE).encode() + b"\r\n")
    assert client.read_line().decode() == block[2]
    client.close()
