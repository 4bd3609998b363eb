"""ENVELOPE (RFC 9051 7.5.2) and the IMAP address reader (hardmail.mime.addresses.imap_addresses)."""

from __future__ import annotations

import json
import random

import pytest

from data.mime.imap_text import CORPUS, normalise, parse_fetch
from hardmail.imap.values import Run
from hardmail.mime.addresses import imap_addresses
from hardmail.mime.envelope import envelope
from hardmail.mime.headers import parse_header_block


@pytest.mark.parametrize(("raw", "expected"), [
    (b'"Doe, John" <john@example.com>', [(b"Doe, John", None, b"john", b"example.com")]),
    (b"john@example.com (John Doe)", [(b"John Doe", None, b"john", b"example.com")]),
    (b"=?utf-8?q?J=C3=B6rg?= <j@x.de>", [(b"=?utf-8?q?J=C3=B6rg?=", None, b"j", b"x.de")]),  # not decoded
    ("Jörg <jörg@bücher.example>".encode(), [("Jörg".encode(), None, "jörg".encode(), "bücher.example".encode())]),
    (b"<@a.example,@b.example:user@c.example>", [(None, b"@a.example,@b.example", b"user", b"c.example")]),
    (b"undisclosed-recipients:;", [(None, None, b"undisclosed-recipients", None), (None, None, None, None)]),
    (b"Team: a@x, B <b@y>; c@z", [(None, None, b"Team", None), (None, None, b"a", b"x"), (b"B", None, b"b", b"y"),
                                 (None, None, None, None), (None, None, b"c", b"z")]),
    (b"localonly", [(None, None, b"localonly", b"MISSING_DOMAIN")]),
    (b'"quoted local"@example.com', [(None, None, b"quoted local", b"example.com")]),
    (b"<>", [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]),
    (b"", []),
    (b" , ,", [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")] * 2),  # empty elements (Dovecot)
])
def test_addresses(raw: bytes, expected: list[tuple[bytes | None, ...]]) -> None:
    assert imap_addresses(raw) == expected


def test_envelope_defaults_and_raw_values() -> None:
    block = parse_header_block(b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nSubject: \r\n"
                               b"From: =?utf-8?q?A?= <a@x>\r\nTo: b@y,\r\n c@z\r\nMessage-ID: <m@x>\r\n\r\n")
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = envelope(block)
    assert (date, subject, message_id, in_reply_to, cc, bcc) == (
        b"Mon, 1 Jan 2024 00:00:00 +0000", b"", b"<m@x>", None, None, None)
    assert from_ == sender == reply_to == [Run([[b"=?utf-8?q?A?=", None, b"a", b"x"]])]
    assert to == [Run([[None, None, b"b", b"y"], [None, None, b"c", b"z"]])]


def test_empty_from_gives_nil_lists() -> None:
    assert envelope(parse_header_block(b"From: \r\n\r\n"))[2:5] == [None, None, None]
    assert envelope(parse_header_block(b"")) == [None] * 10


def test_random_address_lists_never_raise() -> None:
    rng = random.Random(5)
    alphabet = b'ab@.,;:<>()"\\[] \t\xc3'
    for _ in range(5000):
        imap_addresses(bytes(rng.choice(alphabet) for _ in range(rng.randrange(30))))
    imap_addresses(b"(" * 10000 + b'"' * 10000 + b"a@b," * 5000)  # one pass: long values are fine


EXPECTED = json.loads((CORPUS / "expected_dovecot.json").read_text())["address_cases"]
# Where hardmail reads a broken address differently from Dovecot 2.3, on purpose: an unclosed
# domain literal is still a domain literal; in ``<@a,b:c@d>`` the route is refused, and so is
# the address (Dovecot keeps "b" from inside the route as the mailbox)
DIFFERENT = {"a@[1.2.3.4", "<@a,b:c@d>"}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_addresses_as_dovecot(case: str) -> None:
    answer = EXPECTED[case]
    answer = answer if answer.startswith("* ") else "* " + answer
    theirs = next(iter(parse_fetch(answer.encode("latin-1")).values()))["ENVELOPE"][5]
    ours = normalise(envelope(parse_header_block(b"To: " + case.encode() + b"\r\n\r\n")))[5]
    assert (ours == theirs) != (case in DIFFERENT)
