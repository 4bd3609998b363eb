"""Originator addresses and the DMARC author domain, read from the one header parser; hostile
values (encoded CR/LF, deep nesting, over-long fields) give a verdict, never an exception."""

from __future__ import annotations

import pytest

from hardmail.mime.addresses import (
    MAX_ADDRESS_FIELD,
    MAX_SPECIALS,
    author,
    originator_addresses,
    parse_address_list,
)
from hardmail.mime.headers import parse_header_block


def _originators(block: bytes) -> tuple[str | None, tuple[str, ...]]:
    return originator_addresses(parse_header_block(block + b"\r\n"))


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"From: alice@example.org\r\n", ("alice@example.org",)),
        (b"From: Alice Smith <alice@EXAMPLE.Org>\r\n", ("alice@example.org",)),
        (b'From: "Smith, Alice" <alice@example.org>\r\n', ("alice@example.org",)),
        (b"From: a@example.org, b@example.net\r\n", ("a@example.org", "b@example.net")),
        (b"From: team: a@example.org, b@Example.NET;\r\n", ("a@example.org", "b@example.net")),
        (b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n", ("jorg@example.org",)),
        (b"From: =?utf-8?q?boss=40bank.example?= <me@example.org>\r\n", ("me@example.org",)),
        (b"FROM:\r\n Alice\r\n <alice@example.org>\r\n", ("alice@example.org",)),
        ("From: Jörg <jörg@bücher.de>\r\n".encode(), ("jörg@xn--bcher-kva.de",)),
        # an encoded word in quotes (some mail programs write it) is a display-name defect only
        (b'From: "=?utf-8?q?J=C3=B6rg?=" <jorg@example.org>\r\n', ("jorg@example.org",)),
        # RFC 2047 6.2: a decoded CR/LF is display text; the address is what is checked
        (b"From: =?utf-8?q?Bob=0D=0AX?= <alice@example.org>\r\nSender: =?utf-8?q?A=0D=0A?= <a@example.org>\r\n",
         ("alice@example.org", "a@example.org")),
    ],
)
def test_originator_addresses(block: bytes, expected: tuple[str, ...]) -> None:
    assert _originators(block) == (None, expected)


@pytest.mark.parametrize("block", [
    b"Subject: no from\r\n",
    b"From:\r\n",
    b"From: Undisclosed:;\r\n",
    b'From: "alice@example.org" :;\r\n',  # a group whose name looks like an address
    b"From: a@example.org\r\nSubject: x\r\nfrom: b@example.org\r\n",
    b"From : alice@example.org\r\n",
    b"From: alice@example.org\r\nSender:\r\n",
    b"From: alice@example.org\r\nno colon\r\n",
    b"From: alice\r\n",
    b"From: a@\r\n",
    b"From: me@example.org@bank.example\r\n",
    b"From: " + b"(" * 900 + b"\r\n",  # the stdlib parsers recurse: RecursionError is caught
    b"From: " + b"a" * MAX_ADDRESS_FIELD + b"@example.org\r\n",
])
def test_originators_that_are_refused(block: bytes) -> None:
    problem, addresses = _originators(block)
    assert problem is not None and addresses == ()


@pytest.mark.parametrize("block", [
    b"From: me@example.org <victim@bank.example>\r\n",
    b"From: me@example.org (x) <victim@bank.example>\r\n",
])
def test_a_from_read_differently_is_refused_or_names_every_candidate(block: bytes) -> None:
    problem, addresses = _originators(block)
    assert problem is not None or "victim@bank.example" in addresses


def test_a_from_longer_than_one_line_is_parsed() -> None:
    """RFC 5322 2.1.1's 998 characters bound a line; a folded field may be longer."""
    name = "=?utf-8?q?Al=C3=AFce_Liddell?= " * 40
    assert len(name) > 998
    assert parse_address_list(f"{name}<alice@example.org>") == parsed_ok("alice@example.org")


def parsed_ok(*addresses: str) -> object:
    return type(parse_address_list(""))(addresses)


def test_encoded_crlf_in_a_display_name_raises_nothing() -> None:
    parsed = parse_address_list("=?utf-8?q?Bob=0D=0AX?= <bob@example.org>")
    assert parsed.addresses == ("bob@example.org",) and parsed.problem == ""


@pytest.mark.parametrize(("block", "domain", "domains"), [
    (b"From: A <a@Example.COM>\r\nTo: b@x\r\n", "example.com", ("example.com",)),
    (b"From: a@x.example, b@x.example\r\n", "x.example", ("x.example",)),
    (b"From: ceo@bank.example\r\nX-Foo : bar\r\n", "bank.example", ("bank.example",)),  # not the From
])
def test_one_author_domain(block: bytes, domain: str, domains: tuple[str, ...]) -> None:
    found = author(parse_header_block(block + b"\r\n"))
    assert (found.domain, found.domains, found.problem) == (domain, domains, "")


@pytest.mark.parametrize(("block", "domains"), [
    (b"From: a@x.org\r\nFrom: ceo@bank.example\r\n", ("x.org", "bank.example")),
    (b"From : ceo@bank.example\r\n", ("bank.example",)),
    (b"From: ceo@bank.example\r\nno colon line\r\n", ("bank.example",)),
    (b"From: ceo@bank.example <\r\n", ("bank.example",)),
    (b'From: "ceo@bank.example" :;\r\n', ("bank.example",)),
    # read leniently (unparsed): a comment after the "@" does not hide the domain
    (b"From: me@x.org, ceo@(c)bank.example " + b"x" * MAX_ADDRESS_FIELD + b"\r\n", ("x.org", "bank.example")),
    (b"From: me@x.org, " + b"(c)" * MAX_SPECIALS + b" ceo@ ((n) c) bank.example\r\n", ("x.org", "bank.example")),
    (b"To: b@x\r\n", ()),
    (b"From: Undisclosed:;\r\n", ()),
    (b"From: <@bank.example:me@x.org>\r\n", ("x.org", "bank.example")),  # RFC 5322 4.4 obs-route
    # malformed lines that a mail reader may still show as the From field
    (b" From: ceo@bank.example\r\nFrom: me@x.org\r\n", ("bank.example", "x.org")),
    (b"From: me@x.org\r\nFrom\x01: ceo@bank.example\r\n", ("x.org", "bank.example")),
    (b"From: me@x.org\r\nFROM <ceo@bank.example>\r\n", ("x.org", "bank.example")),
])
def test_ambiguous_author_names_every_domain_present(block: bytes, domains: tuple[str, ...]) -> None:
    found = author(parse_header_block(block + b"\r\n"))
    assert found.problem and found.domain is None and found.domains == domains


@pytest.mark.parametrize("block", [
    b"From: me@x.org, <ceo@bank.example!>\r\n",
    b"From: me@x.org, ceo@[192.0.2.1]\r\n",
    b"From : me@x.org, ceo@bank.example#\r\n",
])
def test_an_address_whose_domain_is_no_dns_name_makes_the_author_undeterminable(block: bytes) -> None:
    found = author(parse_header_block(block + b"\r\n"))
    assert found.undeterminable and found.domains == ("x.org",)


def test_several_author_domains_in_one_well_formed_from() -> None:
    found = author(parse_header_block(b"From: me@a.example, ceo@bank.example\r\n\r\n"))
    assert (found.problem, found.domain, found.domains) == ("", None, ("a.example", "bank.example"))


def test_only_dns_names_are_author_domains() -> None:
    """An address literal or a junk "domain" is nothing DMARC could look up."""
    assert author(parse_header_block(b"From: a@[192.0.2.1]\r\n\r\n")).domains == ()
    junk = author(parse_header_block(b"From: x@bank.example, y@" + b"a" * 300 + b".example\r\nFrom: z@\r\n\r\n"))
    assert junk.domains == ("bank.example",) and junk.problem
