"""The decoded text SEARCH reads, checked with Dovecot's SEARCH CHARSET UTF-8 answers for the
corpus (tests/data/mime/expected_dovecot.json)."""

from __future__ import annotations

import json
import re

import pytest

from data.mime.imap_text import CORPUS, mailbox_messages, untagged
from hardmail.mime.structure import parse_message
from hardmail.mime.text import MessageText, contains

EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())
_KEY = re.compile(r'SEARCH CHARSET UTF-8 (\w+) (?:"([^"]*)" )?"([^"]*)"')
SEARCHES = [(box, command) for box in ("corpus_mailbox", "threads_mailbox", "threads_random_mailbox", "stdlib_mailbox")
            for command in EXPECTED[box]["answers"] if command.startswith("SEARCH")]


def matches(text: MessageText, key: str, field: str | None, needle: str) -> bool:
    if key == "BODY":
        return contains(text.body_text(), needle)
    if key == "TEXT":
        return contains(text.text(), needle)
    name = (field or key).lower()
    return text.has_header(name) and any(contains(value, needle) for value in text.header(name))


# Where hardmail finds other messages than Dovecot 2.3 (without a full-text index), on purpose:
# HTML is searched as its text (tags removed, entities decoded), where Dovecot searches the raw
# markup; a message/global part is an enclosed message (RFC 6532 3.5), whose header is not body
# text; an encoded word that cannot be decoded stays as it is written.
DIFFERENT = {
    'SEARCH CHARSET UTF-8 BODY "&amp;"': "raw HTML",
    'SEARCH CHARSET UTF-8 BODY "MsoNormal"': "raw HTML",
    'SEARCH CHARSET UTF-8 BODY "edge & case"': "raw HTML",
    'SEARCH CHARSET UTF-8 BODY "Content-Type"': "raw HTML, message/global",
    'SEARCH CHARSET UTF-8 TEXT "=?utf-8?"': "an undecodable encoded word",
}


@pytest.mark.parametrize(("box", "command"), SEARCHES)
def test_search_text_as_dovecot(box: str, command: str) -> None:
    found = _KEY.fullmatch(command)
    assert found
    key, field, needle = found.groups()
    theirs = [int(n) for n in untagged(EXPECTED[box]["answers"][command], "SEARCH").split()]
    ours = [m.seq for m in mailbox_messages(EXPECTED, box)
            if matches(MessageText(m.data, parse_message(m.data)), key, field, needle)]
    assert (ours == theirs) != (box == "corpus_mailbox" and command in DIFFERENT)
