"""Runs every ``*.txt`` POP3 transcript here against a live server through real sockets.

Format as the SMTP transcripts (``tests/transcripts/test_transcripts.py``): ``C: text`` is sent
with CRLF (consecutive C: lines in one write: pipelining), ``C!: text`` as written with backslash
escapes, ``S: pattern`` matches one response line with ``*`` and ``?`` wildcards (``[`` is literal), ``TLS:`` does the
client side of the handshake, ``CLOSED:`` expects the server to close, ``#`` is a comment. The
first line may be ``LISTENER: pop3|pop3s``. Each transcript gets its own server, with three
messages in alice's INBOX (see ``support.pop3.message``; sizes in ``SIZES``).
"""

from __future__ import annotations

import codecs
import fnmatch
from pathlib import Path

import pytest

from support.live import RawClient, ServerThread
from support.pop3 import pop3_server
from support.transcripts import transcript_steps

HERE = Path(__file__).parent
TRANSCRIPTS = sorted(HERE.glob("*.txt"))


def run_transcript(server: ServerThread, path: Path) -> None:
    listener, steps = transcript_steps(path, "pop3")
    client = RawClient(server.address(listener), tls_on_connect=listener == "pop3s")
    pending: list[bytes] = []

    def flush() -> None:
        if pending:
            client.send(b"".join(pending))
            pending.clear()

    try:
        for number, (kind, text) in enumerate(steps, 1):
            if kind in ("C", "C!"):
                pending.append(text.encode() + b"\r\n" if kind == "C" else codecs.escape_decode(text.encode())[0])
                continue
            flush()
            if kind == "S":
                line = client.read_line().decode("utf-8", "replace")
                pattern = text.replace("[", "[[]")  # "[AUTH]" is literal text, not a character class
                assert fnmatch.fnmatchcase(line, pattern), f"{path.name} step {number}: got {line!r}, want {text!r}"
            elif kind == "TLS":
                client.starttls()
            elif kind == "CLOSED":
                assert client.closed_by_server(), f"{path.name} step {number}: server did not close"
            else:
                raise AssertionError(f"{path.name}: unknown step kind {kind!r}")
    finally:
        client.close()


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
def test_transcript(tmp_path: Path, path: Path) -> None:
    with pop3_server(tmp_path / "data", messages=3) as live:
        run_transcript(live, path)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("S: -ERR *\n")
    with pop3_server(tmp_path / "data") as live, pytest.raises(AssertionError):
        run_transcript(live, wrong)
