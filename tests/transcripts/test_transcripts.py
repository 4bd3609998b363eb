"""Runs every ``*.txt`` transcript here against a live server through real sockets.

Format: ``C: text`` is sent with CRLF (consecutive C: lines go out in one write, as a pipelining
client does); ``C!: text`` is sent as written with backslash escapes (\\r, \\n, \\x00) and no CRLF
added; ``S: pattern`` reads one reply line and matches it with shell-style wildcards; ``TLS:``
performs the client side of the TLS handshake; ``CLOSED:`` expects the server to close; ``#``
starts a comment. The first line may be ``LISTENER: smtp|submission|submissions``.
"""

from __future__ import annotations

import codecs
import fnmatch
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.live import RawClient, ServerThread, running_server, server_config
from support.transcripts import transcript_steps

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(HERE.glob("*.txt"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(server_config(tmp_path_factory.mktemp("transcripts") / "data")) as live:
        yield live


def _flush(client: RawClient, pending: list[bytes]) -> None:
    if pending:
        client.send(b"".join(pending))
        pending.clear()


def run_transcript(server: ServerThread, path: Path) -> None:
    listener, steps = transcript_steps(path, "smtp")
    client = RawClient(server.address(listener), tls_on_connect=listener == "submissions")
    pending: list[bytes] = []
    try:
        for number, (kind, text) in enumerate(steps, 1):
            if kind == "C":
                pending.append(text.encode() + b"\r\n")
            elif kind == "C!":
                pending.append(codecs.escape_decode(text.encode())[0])
            elif kind == "S":
                _flush(client, pending)
                line = client.read_line().decode("utf-8", "replace")
                assert fnmatch.fnmatchcase(line, text), f"{path.name} step {number}: got {line!r}, want {text!r}"
            elif kind == "TLS":
                _flush(client, pending)
                client.starttls()
            elif kind == "CLOSED":
                _flush(client, pending)
                assert client.closed_by_server(), f"{path.name} step {number}: server did not close"
            else:
                raise AssertionError(f"{path.name}: unknown step kind {kind!r}")
    finally:
        client.close()


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(server: ServerThread, path: Path) -> None:
    run_transcript(server, path)


def test_a_wrong_expectation_fails(server: ServerThread, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("S: 554 *\n")
    with pytest.raises(AssertionError):
        run_transcript(server, wrong)
