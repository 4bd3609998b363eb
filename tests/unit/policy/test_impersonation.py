"""The impersonation verdict: a table of From: fields (raw header bytes, read by the project's
header parser) against a directory with one hosted domain and a few users."""

from __future__ import annotations

import pytest

from hardmail.mime.headers import parse_header_block
from hardmail.policy.impersonation import (
    WARNING_FIELD,
    Directory,
    Settings,
    judge_head,
    look_alike,
    osa_distance,
    skeleton,
    unicode_domain,
    warning_positions,
)

DIRECTORY = Directory.build(
    [("alice@example.org", "Alice Liddell"), ("bob.smith@example.org", ""), ("info@example.org", "")],
    ["example.org", "shop.example"],
)
SETTINGS = Settings()
CYRILLIC_IE = "\u0435"


def verdict(from_value: bytes, settings: Settings = SETTINGS) -> tuple[str, ...]:
    head = b"Received: by relay.test\r\nFrom: " + from_value + b"\r\nSubject: hi\r\n\r\n"
    return tuple(f.kind for f in judge_head(head, DIRECTORY, settings).findings)


DOMAIN_CASES = [
    # (From: value, expected kinds)
    (b"Bob <bob@examp1e.org>", ("homograph",)),  # digit one for l
    (b"Bob <bob@exarnple.org>", ("homograph",)),  # rn for m
    (b"Bob <bob@xn--xample-2of.org>", ("homograph",)),  # Cyrillic ie as the first letter, A-label
    (f"Bob <bob@{CYRILLIC_IE}xample.org>".encode(), ("homograph",)),  # the same in UTF-8 (RFC 6532)
    (b"Bob <bob@exampIe.org>", ("homograph",)),  # capital I for l
    (b"Bob <bob@EXAMP1E.ORG>", ("homograph",)),
    (b"Bob <bob@mail.examp1e.org>", ("homograph",)),  # below a look-alike
    (b"Bob <bob@exmaple.org>", ("edit",)),  # two letters swapped: one edit
    (b"Bob <bob@exampl.org>", ("edit",)),
    (b"Bob <bob@exammple.org>", ("edit",)),
    (b"Bob <bob@shop.exampel>", ("edit",)),
    (b"Bob <bob@example.org.evil.test>", ("prefix",)),
    (b"Pay <service@paypa1.example>", ()),  # looks like paypal.example, which is not ours
    (b"Bob <bob@unrelated.test>", ()),
    (b"Bob <bob@example.net>", ()),  # three edits
    (b"Bob <bob@example.org>", ()),  # our own domain from outside: DMARC's business
    (b"Bob <bob@EXAMPLE.ORG>", ()),
    (b"Bob <bob@lists.example.org>", ()),  # below our domain: ours too
    (b"bob@gmail.test", ()),
]


@pytest.mark.parametrize(("value", "kinds"), DOMAIN_CASES, ids=[c[0].decode("utf-8") for c in DOMAIN_CASES])
def test_look_alike_domains(value: bytes, kinds: tuple[str, ...]) -> None:
    assert verdict(value) == kinds


NAME_CASES = [
    (b'"Alice Liddell" <alice.liddell@gmail.test>', ("name",)),
    (b"alice liddell <x@gmail.test>", ("name",)),  # case
    (b'"  Alice   Liddell " <x@gmail.test>', ("name",)),  # white space
    (b'"Liddell, Alice" <x@gmail.test>', ("name",)),  # word order
    (b"=?utf-8?q?Alice_Liddell?= <x@gmail.test>", ("name",)),  # an encoded word
    (b"=?utf-8?b?77yh77yM77yM77yJ77yD77yF?= <x@gmail.test>", ()),  # fullwidth letters that are not a name of ours
    ("\uff21lice Liddell <x@gmail.test>".encode(), ("name",)),  # a fullwidth A: NFKC
    ("Al\u200bice Liddell <x@gmail.test>".encode(), ("name",)),  # a zero-width space
    (b"AIice LiddeII <x@gmail.test>", ("name",)),  # capital I for l: the skeleton
    (b'"alice@example.org" <evil@bad.test>', ("address-name",)),
    (b'"ALICE@EXAMPLE.ORG via Bank" <evil@bad.test>', ("address-name",)),
    (b"Bob.Smith <x@gmail.test>", ("name",)),  # a local part used as the name
    (b"Info <info@shop.test>", ()),  # a generic local part: many senders use it
    (b"Alice <x@gmail.test>", ("name",)),  # the local part of alice@example.org
    (b"Carol <x@gmail.test>", ()),
    (b"Alice Liddell <alice@example.org>", ()),  # our domain: DMARC's business
    (b"Carol Jones <carol@gmail.test>", ()),
    (b'"Alice Liddell" <alice@examp1e.org>', ("name", "homograph")),
]


@pytest.mark.parametrize(("value", "kinds"), NAME_CASES, ids=[c[0].decode("utf-8") for c in NAME_CASES])
def test_display_names(value: bytes, kinds: tuple[str, ...]) -> None:
    assert verdict(value) == kinds


def test_display_names_can_be_turned_off() -> None:
    assert verdict(b'"Alice Liddell" <x@gmail.test>', Settings(match_display_names=False)) == ()


def test_edit_distance_zero_keeps_homographs_only() -> None:
    off = Settings(max_edit_distance=0)
    assert verdict(b"Bob <bob@exmaple.org>", off) == ()
    assert verdict(b"Bob <bob@examp1e.org>", off) == ("homograph",)
    assert verdict(b"Bob <bob@exmaple.org>", Settings(max_edit_distance=1)) == ("edit",)


def test_two_edits_only_up_to_the_setting_and_not_for_short_domains() -> None:
    assert verdict(b"Bob <bob@exmapel.org>") == ("edit",)  # a swap and a substitution
    assert verdict(b"Bob <bob@exmapel.org>", Settings(max_edit_distance=1)) == ()
    short = Directory.build([], ["ab.io"])
    assert look_alike("ac.io", "ab.io", 2) == "edit"
    assert look_alike("xy.io", "ab.io", 2) is None  # two edits on a short name: too many strangers
    assert not judge_head(b"From: x@xy.io\r\n\r\n", short, SETTINGS)


def test_warning_texts_in_plain_words() -> None:
    head = b"From: Bob <bob@xn--xample-2of.org>, \"Alice Liddell\" <al@gmail.test>\r\n\r\n"
    found = judge_head(head, DIRECTORY, SETTINGS)
    assert found.headers == (
        b"X-Hardmail-Warning: The sender's domain xn--xample-2of.org looks like your domain example.org "
        b"(it is written with letters of another alphabet: Cyrillic)\r\n"
        b"X-Hardmail-Warning: The sender's name matches a person in your organisation, but the message "
        b"came from outside (address al@gmail.test)\r\n")
    lines = found.notice_lines()
    assert lines[0].startswith("WARNING: The sender's domain xn--xample-2of.org")
    assert lines[-1] == "" and all(len(line) <= 72 for line in lines)


def test_warning_text_is_printable_ascii_whatever_the_sender_writes() -> None:
    head = "From: Alice Liddell <j\u00f6rg@b\u00e4d.test>\r\n\r\n".encode()
    text = judge_head(head, DIRECTORY, SETTINGS).headers
    assert text == b"X-Hardmail-Warning: The sender's name matches a person in your organisation, but the message " \
                   b"came from outside (address j?rg@xn--bd-via.test)\r\n"
    head = b"From: =?utf-8?q?alice=40example.org=0D=0AX-Evil=3A_1?= <" + b"x" * 300 + b"@bad.test>\r\n\r\n"
    text = judge_head(head, DIRECTORY, SETTINGS).headers
    assert text.startswith(b"X-Hardmail-Warning: The sender's name is the address alice@example.org of your")
    assert text.isascii() and text.count(b"\r\n") == 1 and b"X-Evil" not in text and b"x" * 121 not in text


def test_from_fields_without_an_address_give_nothing() -> None:
    for head in (b"Subject: no from\r\n\r\n", b"From: undisclosed-recipients:;\r\n\r\n", b"From: <@>\r\n\r\n",
                 b"From: Alice Liddell\r\n\r\n", b"From: x@[192.0.2.1]\r\n\r\n"):
        assert not judge_head(head, DIRECTORY, SETTINGS), head


def test_every_from_field_counts() -> None:
    head = b"From: bob@unrelated.test\r\nFrom: bob@examp1e.org\r\n\r\n"
    assert [f.kind for f in judge_head(head, DIRECTORY, SETTINGS).findings] == ["homograph"]


def test_skeleton_follows_uts39() -> None:
    assert skeleton("examp1e") == skeleton("example") == skeleton("exampIe") == skeleton("exarnple")
    assert skeleton(f"{CYRILLIC_IE}xample") == skeleton("example")
    assert skeleton("example") != skeleton("exarnp1e.org")
    assert skeleton("paypal") == skeleton("paypa1") and skeleton("abc") == "abc"
    assert look_alike("paypa1.example", "paypal.example", 2) == "homograph"
    assert look_alike("PAYPAL.example", "paypal.example", 2) is None  # the same name in capitals


def test_osa_distance() -> None:
    assert osa_distance("example", "example", 2) == 0
    assert osa_distance("exmaple", "example", 2) == 1  # one swap
    assert osa_distance("exampel", "example", 2) == 1
    assert osa_distance("exmapel", "example", 2) == 2
    assert osa_distance("example", "elpmaxe", 2) == 3  # more than the limit: limit + 1
    assert osa_distance("a", "abcdef", 2) == 3


def test_unicode_domain() -> None:
    assert unicode_domain("xn--xample-2of.org.") == f"{CYRILLIC_IE}xample.org"
    assert unicode_domain("xn--\u00e9.org") == "xn--\u00e9.org"  # not punycode: kept as written


def test_incoming_warning_fields_are_found_for_removal() -> None:
    block = parse_header_block(b"From: a@b.test\r\nX-Hardmail-Warning: all is well\r\n"
                               b"x-hardmail-warning : folded\r\n  on\r\nSubject: s\r\n\r\n")
    assert warning_positions(block) == (1, 2)
    assert WARNING_FIELD == "X-Hardmail-Warning"
