"""Runs every ``*.txt`` IMAP transcript here against a live server through real sockets.

The format is the SMTP transcripts' (``tests/transcripts/test_transcripts.py``): ``C: text`` is sent
with CRLF (consecutive C: lines go out in one write, as a pipelining client does); ``C!: text`` is
sent as written with backslash escapes (\\r, \\n) and no CRLF added; ``S: pattern`` reads one
response line and matches it with shell-style wildcards (``[`` is matched literally, as IMAP
response codes are full of brackets); ``TLS:`` performs the client side of the TLS handshake;
``CLOSED:`` expects the server to close; ``#`` starts a comment. The first line may be
``LISTENER: imap|imaps``. Each transcript logs in as alice@example.test.
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
    with running_server(server_config(tmp_path_factory.mktemp("imap-transcripts") / "data")) as live:
        yield live


def _matches(line: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(line, pattern.replace("[", "[[]"))


def run_transcript(server: ServerThread, path: Path) -> None:
    listener, steps = transcript_steps(path, "imap")
    client = RawClient(server.address(listener), tls_on_connect=listener == "imaps")
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
                assert _matches(line, text), f"{path.name} step {number}: got {line!r}, want {text!r}"
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


def _flush(client: RawClient, pending: list[bytes]) -> None:
    if pending:
        client.send(b"".join(pending))
        pending.clear()


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_imap_transcript(server: ServerThread, path: Path) -> None:
    run_transcript(server, path)
