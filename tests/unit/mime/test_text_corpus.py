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
SEARCHES = [(box, command) for box in ("corpus_mailbox", "threads_mailbox")
            for command in EXPECTED[box]["answers"] if command.startswith("SEARCH")]


def matches(text: MessageText, key: str, field: str | None, needle: str) -> bool:
    if key == "BODY":
        return contains(text.body_text(), needle)
    if key == "TEXT":
        return contains(text.text(), needle)
    name = (field or key).lower()
    return text.has_header(name) and any(contains(value, needle) for value in text.header(name))


@pytest.mark.parametrize(("box", "command"), SEARCHES)
def test_search_text_as_dovecot(box: str, command: str) -> None:
    found = _KEY.fullmatch(command)
    assert found
    key, field, needle = found.groups()
    theirs = [int(n) for n in untagged(EXPECTED[box]["answers"][command], "SEARCH").split()]
    ours = [m.seq for m in mailbox_messages(EXPECTED, box)
            if matches(MessageText(m.data, parse_message(m.data)), key, field, needle)]
    assert ours == theirs
