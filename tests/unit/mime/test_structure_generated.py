"""Random MIME structures (tests/data/mime/generated/, written by make_expected.py: nested
multiparts with odd boundaries, padding and missing close delimiters, messages in messages,
parts without headers) read as Dovecot reads them: BODYSTRUCTURE, BODY, ENVELOPE and the BODY[...]
sections. BINARY is left out here: for empty quoted-printable parts Dovecot 2.3 cuts its own
output short or rewrites a header in one section and not in another; the corpus and mutants
tests cover BINARY."""

from __future__ import annotations

import json

import pytest

from data.mime.imap_text import CORPUS, normalise, ours_for, parse_fetch, theirs_for
from hardmail.mime.bodystructure import body_structure
from hardmail.mime.envelope import envelope
from hardmail.mime.structure import parse_message

EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())["generated"]


def on_purpose(item: str, ours: object, theirs: object) -> bool:
    if "1.1.1.1.1" in item:  # a part number below a leaf: RFC 9051 has none; Dovecot at times
        return True          # takes the leaf again
    # an enclosed message whose header's empty line is the line end before a delimiter: Dovecot
    # counts that line in the part but leaves it out of HEADER and MIME; hardmail sends it there
    return item.endswith((".HEADER]", ".MIME]")) and isinstance(theirs, bytes) and ours == theirs + b"\r\n"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_generated_as_dovecot(name: str) -> None:
    data = (CORPUS / "generated" / name).read_bytes()
    root = parse_message(data)
    fetched = parse_fetch(EXPECTED[name]["fetch"].encode("latin-1"))[1]
    assert normalise(body_structure(root, data)) == fetched["BODYSTRUCTURE"]
    assert normalise(body_structure(root, data, extended=False)) == fetched["BODY"]
    assert normalise(envelope(root.header)) == fetched["ENVELOPE"]
    for item, answer in EXPECTED[name]["sections"].items():
        if item.startswith("BINARY"):
            continue
        ours, theirs = ours_for(data, root, item), theirs_for(answer)
        assert ours == theirs or on_purpose(item, ours, theirs), item


def test_generated_are_there() -> None:
    assert len(EXPECTED) >= 120
