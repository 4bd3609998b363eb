"""SORT and THREAD over the MIME corpus and the threads/ messages, compared with Dovecot's answers
(tests/data/mime/expected_dovecot.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from data.mime.imap_text import CORPUS, mailbox_messages, untagged
from hardmail.imap.sort import sort_messages
from hardmail.imap.thread import thread_list, thread_messages

EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())
BOXES = ("corpus_mailbox", "threads_mailbox", "threads_random_mailbox", "stdlib_mailbox")


@dataclass(frozen=True)
class Criterion:
    key: str
    reverse: bool = False


def criteria(text: str) -> list[Criterion]:
    out, reverse = [], False
    for word in text.split():
        if word == "REVERSE":
            reverse = True
        else:
            out.append(Criterion(word, reverse))
            reverse = False
    return out


SORTS = [(box, command) for box in BOXES for command in EXPECTED[box]["answers"] if command.startswith("SORT")]


@pytest.mark.parametrize(("box", "command"), SORTS)
def test_sort_as_dovecot(box: str, command: str) -> None:
    messages = mailbox_messages(EXPECTED, box)
    keys = command.removeprefix("SORT (").split(")")[0]
    theirs = [int(n) for n in untagged(EXPECTED[box]["answers"][command], "SORT").split()]
    assert [m.seq for m in sort_messages(messages, criteria(keys))] == theirs


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("algorithm", ["REFERENCES", "ORDEREDSUBJECT"])
def test_thread_as_dovecot(box: str, algorithm: str) -> None:
    messages = mailbox_messages(EXPECTED, box)
    theirs = untagged(EXPECTED[box]["answers"][f"THREAD {algorithm} UTF-8 ALL"], "THREAD")
    assert thread_list(thread_messages(algorithm, messages), lambda m: m.seq) == theirs


def test_thread_numbers_can_be_uids() -> None:
    messages = mailbox_messages(EXPECTED, "threads_mailbox")
    threads = thread_messages("REFERENCES", messages)
    assert thread_list(threads, lambda m: m.uid + 100).startswith("(116)((105 106)(109))")
