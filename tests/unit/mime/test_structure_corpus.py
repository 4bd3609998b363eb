"""BODYSTRUCTURE, BODY, ENVELOPE and every BODY[...]/BINARY[...] section of the MIME corpus
(tests/data/mime/*.eml) compared with Dovecot's answers (expected_dovecot.json, written by
tests/data/mime/make_expected.py), and every truncation of the corpus parsed without an error."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from data.mime.imap_text import Spec, normalise, ours_for, parse_fetch, theirs_for
from hardmail.mime import sections
from hardmail.mime.bodystructure import body_structure
from hardmail.mime.envelope import envelope
from hardmail.mime.structure import crlf, parse_message

CORPUS = Path(__file__).resolve().parents[2] / "data" / "mime"
EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())
FILES = sorted(EXPECTED["messages"])

# Where hardmail differs from Dovecot on purpose: (file, item) → why.
ON_PURPOSE = {
    # a multipart without its close delimiter whose last part is a header without an empty line
    # (a line "and " before the outer delimiter): Dovecot counts the line end before the outer
    # delimiter in the multipart, hardmail gives it to the delimiter (RFC 2046 5.1.1)
    ("stdlib/msg_38.txt", "BODY.PEEK[1]"): "line end before the delimiter",
    ("stdlib/msg_38.txt", "BINARY.PEEK[1]"): "line end before the delimiter",
    ("stdlib/msg_38.txt", "BINARY.SIZE[1]"): "line end before the delimiter",
}
# Dovecot answers BINARY.SIZE of every part of a message with NO [UNKNOWN-CTE] as soon as any
# part of it has an unknown encoding; hardmail decodes only the part asked for (RFC 3516 4.2)
BINARY_SIZE_QUIRK = ("nested_4_levels.eml", "rfc822_attachment_b64.eml")


def load(name: str) -> tuple[bytes, Any]:
    data = crlf((CORPUS / name).read_bytes())  # what the server serves (bare_lf.eml has LFs)
    return data, parse_message(data)


@pytest.mark.parametrize("name", FILES)
def test_bodystructure_envelope_as_dovecot(name: str) -> None:
    data, root = load(name)
    theirs = parse_fetch(EXPECTED["messages"][name]["fetch"].encode("latin-1"))[1]
    ours = {
        "BODYSTRUCTURE": normalise(body_structure(root, data)),
        "BODY": normalise(body_structure(root, data, extended=False)),
        "ENVELOPE": normalise(envelope(root.header)),
        "RFC822.SIZE": len(data),
    }
    for item, value in ours.items():
        if (name, item) not in ON_PURPOSE:
            assert value == theirs[item], item


@pytest.mark.parametrize("name", FILES)
def test_sections_as_dovecot(name: str) -> None:
    data, root = load(name)
    compared = 0
    for item, answer in EXPECTED["messages"][name]["sections"].items():
        if (name, item) in ON_PURPOSE or (name in BINARY_SIZE_QUIRK and item.startswith("BINARY.SIZE")):
            continue
        if "NO [PARSE]" in answer:  # Dovecot refuses BINARY of bad base64; hardmail decodes leniently
            continue
        assert ours_for(data, root, item) == theirs_for(answer), item
        compared += 1
    assert compared >= 14


def test_message_global_under_imap4rev2() -> None:
    """RFC 9051 7.5.2: under IMAP4rev2 a message/global part has its envelope and body."""
    data, root = load("eai_forward_global.eml")
    part = normalise(body_structure(root, data, message_global=True))[1]
    assert part[:2] == [b"message", b"global"] and part[7][1] == "Bücher für die Übergabe".encode()
    assert part[8][:2] == [b"text", b"plain"] and part[9] == 9


def test_on_purpose_differences_are_still_differences() -> None:
    """If Dovecot's answer and ours ever agree, the exception above is no longer needed."""
    data, root = load("nested_4_levels.eml")
    assert ours_for(data, root, "BINARY.SIZE[1.1]") == 5  # text/plain 7bit: nothing to decode


def exercise(data: bytes) -> None:
    """Everything a FETCH can ask of a message."""
    root = parse_message(data)
    body_structure(root, data)
    body_structure(root, data, extended=False)
    envelope(root.header)
    for index, part in enumerate(root.walk()):
        assert root.start <= part.start <= part.header_end <= part.body_start <= part.body_end <= len(data)
        path = (1, index % 3 + 1)
        for text in (None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS"):
            sections.fetch_section(data, root, Spec(path[:1], text, ("SUBJECT",)), (1, 10))
        try:
            sections.binary_section(data, root, path)
            sections.binary_size(data, root, path[:1])
        except sections.UnknownCte:
            pass


@pytest.mark.parametrize("name", FILES)
def test_every_truncation_parses(name: str) -> None:
    data = crlf((CORPUS / name).read_bytes())
    lengths = range(len(data) + 1) if len(data) <= 2500 else random.Random(name).sample(range(len(data)), 400)
    for length in lengths:
        exercise(data[:length])


def test_bare_lf_file_reads_like_its_crlf_form() -> None:
    raw = (CORPUS / "bare_lf.eml").read_bytes()
    assert b"\r\n" not in raw
    lf_root, crlf_root = parse_message(raw), parse_message(crlf(raw))
    assert [p.content_type.value for p in lf_root.walk()] == [p.content_type.value for p in crlf_root.walk()]
    assert [p.lines for p in lf_root.walk()] == [p.lines for p in crlf_root.walk()]
    assert crlf(crlf(raw)) == crlf(raw) and crlf(b"a\r\nb") is not None
