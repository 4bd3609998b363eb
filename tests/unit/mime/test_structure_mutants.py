"""Broken messages (tests/data/mime/mutants/: corpus files with lines deleted, repeated, cut or
the rest cut off, written by make_expected.py) read as Dovecot reads them: BODYSTRUCTURE, BODY,
ENVELOPE and every section Dovecot was asked for. Dovecot is the reference for malformed input;
where hardmail differs on purpose, :func:`on_purpose` says why."""

from __future__ import annotations

import json

import pytest

from data.mime.imap_text import CORPUS, normalise, ours_for, parse_fetch, theirs_for
from hardmail.mime.bodystructure import body_structure
from hardmail.mime.envelope import envelope
from hardmail.mime.structure import crlf, parse_message

EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())["mutants"]


def on_purpose(name: str, data: bytes, item: str, answer: str, ours: object, theirs: object) -> bool:
    """Whether a difference is one hardmail makes on purpose."""
    if "NO [PARSE]" in answer:  # Dovecot refuses BINARY of bad base64; hardmail decodes leniently
        return True
    if name.endswith("_rfc2231_params.eml") and item in ("BODYSTRUCTURE", "BODY"):
        return True  # charset*= (see test_structure_corpus.ON_PURPOSE)
    if theirs == "UNKNOWN-CTE" and item.startswith("BINARY.SIZE"):
        return True  # Dovecot's whole-message BINARY.SIZE (see test_structure_corpus)
    if item.startswith("BINARY") and not parse_message(data).header.complete:
        return True  # no empty line after the header: Dovecot's BINARY[] stops inside a line
    # a message cut inside a line: Dovecot's BINARY output and an enclosed message's
    # HEADER.FIELDS lose that last line; hardmail keeps what is there
    return not data.endswith(b"\n") and (item.startswith("BINARY") or ".HEADER.FIELDS" in item)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_mutant_as_dovecot(name: str) -> None:
    data = crlf((CORPUS / "mutants" / name).read_bytes())
    root = parse_message(data)
    fetched = parse_fetch(EXPECTED[name]["fetch"].encode("latin-1"))[1]
    ours = {
        "BODYSTRUCTURE": normalise(body_structure(root, data)),
        "BODY": normalise(body_structure(root, data, extended=False)),
        "ENVELOPE": normalise(envelope(root.header)),
    }
    for item, value in ours.items():
        assert value == fetched[item] or on_purpose(name, data, item, "", value, fetched[item]), item
    for item, answer in EXPECTED[name]["sections"].items():
        mine, theirs = ours_for(data, root, item), theirs_for(answer) if "NO [PARSE]" not in answer else None
        assert mine == theirs or on_purpose(name, data, item, answer, mine, theirs), item


def test_mutants_are_there() -> None:
    assert len(EXPECTED) >= 70
