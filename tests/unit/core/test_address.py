"""core/address.py: RFC 5321 mailboxes, lengths (RFC 5321 4.5.3.1), IDNA, lookup keys and plus tags."""

from __future__ import annotations

import pytest

from hardmail.core.address import (
    MAX_LOCAL_PART,
    Address,
    AddressError,
    is_ascii_address,
    normalize_domain,
    parse_address_arg,
    parse_mailbox,
)


@pytest.mark.parametrize(
    ("text", "local", "domain"),
    [
        ("user@example.org", "user", "example.org"),
        ("First.Last@Example.ORG", "First.Last", "example.org"),
        ("a+tag@example.org", "a+tag", "example.org"),
        ("!#$%&'*+/=?^_`{|}~-@example.org", "!#$%&'*+/=?^_`{|}~-", "example.org"),
        ('"john doe"@example.org', '"john doe"', "example.org"),
        ('"a@b"@example.org', '"a@b"', "example.org"),
        ('"quote\\"d"@example.org', '"quote\\"d"', "example.org"),
        ("user@localhost", "user", "localhost"),
        ("user@example.org.", "user", "example.org"),
        ("user@[192.0.2.1]", "user", "[192.0.2.1]"),
        ("user@[IPv6:2001:DB8:0::1]", "user", "[ipv6:2001:db8::1]"),
        ("user@sub-domain.example.org", "user", "sub-domain.example.org"),
    ],
)
def test_valid_mailboxes(text, local, domain):
    assert parse_mailbox(text) == Address(local, domain)


@pytest.mark.parametrize(
    "text",
    [
        "", "user", "@example.org", "user@", ".user@example.org", "user.@example.org", "us..er@example.org",
        "us er@example.org", "us(er@example.org", '"unterminated@example.org', "user@exa mple.org",
        "user@ example.org", "user@-example.org", "user@example-.org", "user@exa_mple.org", "user@example..org",
        "user@example.org..", "user@.", "user@[300.1.1.1]", "user@[not-an-ip]", "user@[IPv6:zz::1]",
        "user@[192.0.2.1", "user@xn--zz.example", "user@exa\x00mple.org", "us\x01er@example.org",
    ],
)
def test_invalid_mailboxes(text):
    with pytest.raises(AddressError):
        parse_mailbox(text)


def test_non_ascii_needs_utf8():
    with pytest.raises(AddressError):
        parse_mailbox("jörg@example.org")
    with pytest.raises(AddressError):
        parse_mailbox("user@bücher.example")
    assert parse_mailbox("jörg@bücher.example", utf8=True) == Address("jörg", "xn--bcher-kva.example")


def test_idna_normalisation():
    assert normalize_domain("Bücher.Example") == "xn--bcher-kva.example"
    assert normalize_domain("XN--BCHER-KVA.example") == "xn--bcher-kva.example"
    assert normalize_domain("ÉCOLE.fr") == normalize_domain("école.fr")
    assert parse_mailbox("a@BÜCHER.example", utf8=True).domain == "xn--bcher-kva.example"


@pytest.mark.parametrize("domain", ["x\u200d.example", "a\u0000b.example", "ab--cé.example", "é" * 64 + ".example"])
def test_invalid_idna_domains(domain):
    with pytest.raises(AddressError):
        normalize_domain(domain)


# ----- lengths: RFC 5321 4.5.3.1 -----------------------------------------------------------------
def test_local_part_of_64_octets_accepted():
    assert parse_mailbox("l" * 64 + "@example.org").local == "l" * 64


def test_local_part_of_65_octets_refused():
    with pytest.raises(AddressError):
        parse_mailbox("l" * 65 + "@example.org")


def test_local_part_length_counts_octets_not_characters():
    local = "é" * 33  # 66 octets in UTF-8
    assert len(local) < MAX_LOCAL_PART
    with pytest.raises(AddressError):
        parse_mailbox(local + "@example.org", utf8=True)


def long_domain(octets: int) -> str:
    labels, remaining = [], octets
    while remaining > 0:
        size = min(63, remaining)
        labels.append("d" * size)
        remaining -= size + 1
    domain = ".".join(labels)
    return domain[:octets]


def test_mailbox_of_254_octets_accepted():
    domain = long_domain(254 - 1 - 64)
    text = "l" * 64 + "@" + domain
    assert len(text) == 254
    assert parse_mailbox(text).domain == domain


def test_mailbox_of_255_octets_refused():
    # the path with "<" and ">" would be 257 octets, over RFC 5321 4.5.3.1.3's 256
    text = "l" * 64 + "@" + long_domain(255 - 1 - 64)
    assert len(text) == 255
    with pytest.raises(AddressError):
        parse_mailbox(text)


def test_mailbox_length_counts_octets():
    text = "é" * 30 + "@" + long_domain(200)  # 60 + 1 + 200 octets, 231 characters
    with pytest.raises(AddressError):
        parse_mailbox(text, utf8=True)


def test_domain_label_of_63_accepted_64_refused():
    assert normalize_domain("a" * 63 + ".org") == "a" * 63 + ".org"
    with pytest.raises(AddressError):
        normalize_domain("a" * 64 + ".org")


def test_domain_of_255_accepted_256_refused():
    assert len(normalize_domain(".".join(["d" * 63] * 4))) == 255
    with pytest.raises(AddressError):
        normalize_domain(".".join(["d" * 63] * 3 + ["d", "d" * 62]))  # 256 octets


# ----- key, tags, helpers ------------------------------------------------------------------------
def test_key_lowercases_local_part_and_keeps_domain():
    address = parse_mailbox("John.Doe@Example.ORG")
    assert str(address) == "John.Doe@example.org"
    assert address.key == "john.doe@example.org"


def test_without_tag():
    assert parse_mailbox("user+news@example.org").without_tag() == Address("user", "example.org")
    assert parse_mailbox("user+a+b@example.org").without_tag() == Address("user", "example.org")
    assert parse_mailbox("user-news@example.org").without_tag("-") == Address("user", "example.org")


@pytest.mark.parametrize(("text", "separator"), [("user@example.org", "+"), ("+tag@example.org", "+"),
                                                 ("user+tag@example.org", "")])
def test_without_tag_none(text, separator):
    assert parse_mailbox(text).without_tag(separator) is None


def test_parse_address_arg_strips_and_allows_utf8():
    assert parse_address_arg("  jörg@Bücher.example \n") == Address("jörg", "xn--bcher-kva.example")


def test_is_ascii_address():
    assert is_ascii_address(parse_mailbox("a@example.org"))
    assert not is_ascii_address(parse_mailbox("jörg@example.org", utf8=True))


def test_address_error_is_value_error():
    assert issubclass(AddressError, ValueError)
