"""The one header-block parser: fields, spans, obsolete syntax, malformed lines, and field removal
that is linear in the message whatever its chunking."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest

from hardmail.mime.headers import HEAD_LIMIT, parse_header_block, without_fields


def test_fields_spans_names_and_unfolded_values() -> None:
    data = b"Subject: hello\r\n  world\r\nFROM : a@example.org\r\nX-Empty:\r\n\r\nbody: not a field\r\n"
    block = parse_header_block(data)
    assert block.complete and block.bad_lines == ()
    assert [f.name for f in block.fields] == ["subject", "from", "x-empty"]
    subject, sender, empty = block.fields
    assert block.raw(subject) == b"Subject: hello\r\n  world\r\n"
    assert block.value(subject) == "hello  world"  # RFC 5322 2.2.3: only the CRLF goes
    assert (sender.obsolete, subject.obsolete) == (True, False)  # RFC 5322 4.5.3
    assert block.value(sender) == "a@example.org" and block.value(empty) == ""
    assert data[block.body_offset:] == b"body: not a field\r\n"


@pytest.mark.parametrize(("line", "reason"), [
    (b"no colon here\r\n", "line without a colon"),
    (b"Bad Name: x\r\n", "invalid field name"),
    (b"X-Nul: a\x00b\r\n", "bare CR, LF or NUL"),
    (b"X-Lf: a\nFrom: b@x.example\r\n", "bare CR, LF or NUL"),
    (b"X-Cr: a\rFrom: b@x.example\r\n", "bare CR, LF or NUL"),
    (b"X-Ws: a\r\n \t\r\n", "line of white space only"),
])
def test_malformed_lines_are_flagged(line: bytes, reason: str) -> None:
    block = parse_header_block(b"Subject: s\r\n" + line + b"To: t@example.org\r\n\r\n")
    assert reason in [bad.reason for bad in block.bad_lines]
    assert block.fields[0].name == "subject" and block.fields[-1].name == "to"  # later fields still seen


def test_leading_continuation_and_unterminated_blocks() -> None:
    assert parse_header_block(b" folded\r\nA: 1\r\n\r\n").bad_lines[0].reason == "continuation line before any field"
    cut = parse_header_block(b"A: 1\r\nB: partial")
    assert not cut.complete and [f.name for f in cut.fields] == ["a", "b"]
    assert parse_header_block(b"\r\nbody").fields == () and parse_header_block(b"\r\nbody").complete


def test_a_leading_continuation_line_is_also_read_as_a_field() -> None:
    """A lenient reader may take `` X-Spam-Status: No`` first in the block for a field: it is one
    (flagged as malformed), so that a forged verdict there is removed like any other."""
    message = b" X-Spam-Status: No\r\n\tfolded\r\nFrom : a@example.org\r\n\r\nbody\r\n"
    block = parse_header_block(message)
    assert [(f.name, f.obsolete) for f in block.fields] == [("x-spam-status", False), ("from", True)]
    assert block.raw(block.fields[0]) == b" X-Spam-Status: No\r\n\tfolded\r\n" and len(block.bad_lines) == 1
    assert b"".join(without_fields([message[i:i + 1] for i in range(len(message))], (0,))) == message[29:]


MESSAGE = (b"Received: from a\r\n\tby b\r\nX-Spam-Status: No\r\n  folded\r\nnot a field\r\n"
           b"Subject: kept\r\n\r\nX-Spam-Status: in the body\r\n")
EXPECTED = b"Received: from a\r\n\tby b\r\nnot a field\r\nSubject: kept\r\n\r\nX-Spam-Status: in the body\r\n"


def test_removal_takes_continuation_lines_and_keeps_bad_lines_and_body() -> None:
    assert b"".join(without_fields((MESSAGE,), (1,))) == EXPECTED
    block = parse_header_block(MESSAGE)
    assert b"".join(without_fields((MESSAGE[:7], MESSAGE[7:]), (1,), block)) == EXPECTED


@pytest.mark.parametrize("with_block", [False, True])
def test_removal_fed_one_byte_at_a_time(with_block: bool) -> None:
    block = parse_header_block(MESSAGE) if with_block else None
    pieces = [MESSAGE[i:i + 1] for i in range(len(MESSAGE))]
    assert b"".join(without_fields(pieces, (1,), block)) == EXPECTED


class CountingChunks:
    """A chunk sequence that counts how often each chunk is taken."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.taken = [0] * len(chunks)

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            self.taken[index] += 1
            yield chunk


@pytest.mark.parametrize("blank_line", [True, False])
@pytest.mark.parametrize("with_block", [False, True])
def test_removal_takes_each_of_100000_one_byte_chunks_once(blank_line: bool, with_block: bool) -> None:
    """The quadratic ``joined += chunk`` is gone: every chunk is taken at most once, and only
    HEAD_LIMIT bytes are ever read as the header block, whatever the chunking."""
    head = b"X-Spam-Status: No\r\n" + b"X-Pad: " + b"p" * 60_000 + b"\r\n"
    message = head + (b"\r\n" if blank_line else b"") + b"b" * (100_000 - len(head) - 2) + b"\r\n"
    chunks = CountingChunks([message[i:i + 1] for i in range(len(message))])
    block = parse_header_block(message[:HEAD_LIMIT]) if with_block else None
    kept = without_fields(chunks, (0,), block)
    assert max(chunks.taken) == 1 and min(chunks.taken) == 1
    assert b"".join(kept) == message[len(b"X-Spam-Status: No\r\n"):]
    if not blank_line:
        assert not parse_header_block(message).complete


def test_nothing_to_remove_passes_the_chunks_through() -> None:
    chunks = CountingChunks([b"A: 1\r\n", b"\r\n", b"body"])
    assert without_fields(chunks, ()) == [b"A: 1\r\n", b"\r\n", b"body"]
    assert chunks.taken == [1, 1, 1]


def test_head_limit_ends_the_header_block() -> None:
    """No empty line within the limit: the limit ends the block; nothing after it is touched."""
    message = b"X-Spam-Flag: YES\r\n" + b"X-Pad: p\r\n" * 200 + b"X-Spam-Flag: late\r\n\r\nbody"
    kept = b"".join(without_fields((message,), (0, 999), limit=200))
    assert kept == message[len(b"X-Spam-Flag: YES\r\n"):]


@pytest.mark.parametrize("with_block", [False, True])
def test_removal_reads_at_most_the_head_limit_of_a_header_that_never_ends(with_block: bool) -> None:
    """2 MB of header lines with no empty line, in 2,000 chunks: only HEAD_LIMIT bytes are ever
    read as the header block, so the extra memory stays a few times HEAD_LIMIT (joining every chunk
    until an empty line, as before, held the whole 2 MB twice and copied it 2,000 times)."""
    line = b"X-Pad: " + b"p" * 991 + b"\r\n"
    chunks = [b"X-Spam-Status: No\r\n"] + [line] * 2000
    block = parse_header_block(b"".join(chunks)[:HEAD_LIMIT]) if with_block else None
    tracemalloc.start()
    try:
        kept = without_fields(chunks, (0,), block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * HEAD_LIMIT
    assert b"".join(kept) == b"".join(chunks[1:])


def test_bare_lf_lines_for_stored_messages() -> None:
    """IMAP reads stored messages as they are: with ``bare_lf`` a bare LF ends a line too."""
    data = b"Subject: a\n b\nFrom: x@y\r\n\nbody\n"
    block = parse_header_block(data, bare_lf=True)
    assert block.complete and [f.name for f in block.fields] == ["subject", "from"]
    assert block.value(block.fields[0]) == "a b" and data[block.body_offset:] == b"body\n"
    strict = parse_header_block(data)
    assert not strict.complete  # without it, only CRLF ends a line (as before)


def test_raw_value_keeps_the_end_when_asked() -> None:
    block = parse_header_block(b"Date: Mon, 1 Jan 2024 \r\nSubject:  x \r\n\r\n")
    assert block.raw_value(block.fields[0]) == b"Mon, 1 Jan 2024"
    assert block.raw_value(block.fields[0], strip_end=False) == b"Mon, 1 Jan 2024 "
    assert block.raw_value(block.fields[1], strip_end=False) == b"x "
