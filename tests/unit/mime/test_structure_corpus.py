"""BODYSTRUCTURE, BODY, ENVELOPE and every BODY[...]/BINARY[...] section of the MIME corpus
(tests/data/mime/*.eml) compared with Dovecot's answers (expected_dovecot.json, written by
tests/data/mime/make_expected.py), and every truncation of the corpus parsed without an error."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data.mime.imap_text import normalise, parse_fetch
from hardmail.mime import sections
from hardmail.mime.bodystructure import body_structure
from hardmail.mime.envelope import envelope
from hardmail.mime.structure import crlf, parse_message

CORPUS = Path(__file__).resolve().parents[2] / "data" / "mime"
EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())
FILES = sorted(EXPECTED["messages"])

# Where hardmail differs from Dovecot on purpose: (file, item) → why.
ON_PURPOSE = {
    # ``charset*=us-ascii'en'us-ascii`` is one RFC 2231 4 extended value: hardmail shows it as
    # "charset*" and adds no default charset; Dovecot 2.3 shows it as "charset*1*" and adds
    # ("charset" "us-ascii") as if there were none
    ("rfc2231_params.eml", "BODYSTRUCTURE"): "RFC 2231 4 value without sections",
    ("rfc2231_params.eml", "BODY"): "RFC 2231 4 value without sections",
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


@dataclass(frozen=True)
class Spec:
    part: tuple[int, ...]
    text: str | None
    fields: tuple[str, ...]


_ITEM = re.compile(r"(BODY\.PEEK|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d+)\.(\d+)>)?")
_SECTION = re.compile(r"([\d.]*?)\.?((?:HEADER\.FIELDS(?:\.NOT)?|HEADER|TEXT|MIME).*)?")


def spec(text: str) -> Spec:
    found = _SECTION.fullmatch(text)
    assert found
    numbers, name = found.group(1), found.group(2)
    fields: tuple[str, ...] = ()
    if name and " (" in name:
        name, listed = name.split(" (", 1)
        fields = tuple(listed.rstrip(")").split())
    return Spec(tuple(int(n) for n in numbers.split(".") if n), name, fields)


def ours_for(data: bytes, root: Any, item: str) -> Any:
    found = _ITEM.fullmatch(item)
    assert found
    kind, section, origin, count = found.groups()
    partial = (int(origin), int(count)) if origin else None
    wanted = spec(section)
    try:
        if kind == "BODY.PEEK":
            return sections.fetch_section(data, root, wanted, partial)
        if kind == "BINARY.PEEK":
            return sections.binary_section(data, root, wanted.part, partial)
        return sections.binary_size(data, root, wanted.part)
    except sections.UnknownCte:
        return "UNKNOWN-CTE"


def theirs_for(answer: str) -> Any:
    raw = answer.encode("latin-1")
    tagged = raw.rsplit(b"\r\n", 2)[-2]
    if b"[UNKNOWN-CTE]" in tagged:
        return "UNKNOWN-CTE"
    assert b" OK " in tagged, tagged
    values = list(parse_fetch(raw).get(1, {}).values())
    assert len(values) == 1
    return values[0]


@pytest.mark.parametrize("name", FILES)
def test_sections_as_dovecot(name: str) -> None:
    data, root = load(name)
    compared = 0
    for item, answer in EXPECTED["messages"][name]["sections"].items():
        if (name, item) in ON_PURPOSE or (name in BINARY_SIZE_QUIRK and item.startswith("BINARY.SIZE")):
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
    data, root = load("rfc2231_params.eml")
    theirs = parse_fetch(EXPECTED["messages"]["rfc2231_params.eml"]["fetch"].encode("latin-1"))[1]
    assert normalise(body_structure(root, data, extended=False)) != theirs["BODY"]
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
