"""The impersonation verdict: a table of From: fields (raw header bytes, read by the project's
header parser) against a directory with one hosted domain and a few users."""

from __future__ import annotations

import random

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
from hardmail.policy.lookalike import HostedDomains

DIRECTORY = Directory.build(
    [("alice@example.org", "Alice Liddell"), ("bob.smith@example.org", ""), ("info@example.org", ""),
     ("dave@example.org", "Dave Lister"), ("jane_doe@example.org", ""), ("support@example.org", "Support Team"),
     ("admin@example.org", ""), ("billing@example.org", ""), ("newsletter@example.org", ""),
     ("no-reply@example.org", ""), ("kryten@example.org", "Kryten")],
    ["example.org", "shop.example"],
)
SETTINGS = Settings()
CYRILLIC_IE = "\u0435"
FULLWIDTH_E = "\uff45"


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
    # NFKC would make these example.org: a homograph, not our own domain
    (f"Bob <bob@{FULLWIDTH_E}xample.org>".encode(), ("homograph",)),
    (f"Bob <bob@{FULLWIDTH_E.upper()}XAMPLE.ORG>".encode(), ("homograph",)),
    (f"Bob <bob@mail.{FULLWIDTH_E}xample.org>".encode(), ("homograph",)),
    ("Bob <bob@example\u3002org>".encode(), ("homograph",)),  # an ideographic full stop (RFC 3490 3.1)
    (b"Bob <bob@" + f"{FULLWIDTH_E}xample".encode("punycode").join((b"xn--", b".org>")), ("homograph",)),
    (f"Bob <bob@{FULLWIDTH_E}xample.org.evil.test>".encode(), ("prefix",)),
    (b"Bob <bob@exa\x7fmple.org>", ("edit",)),
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
    (b"Alice <x@gmail.test>", ()),  # the local part of alice@example.org: one word, many Alices
    (b"Dave <x@gmail.test>", ()),
    (b"Dave Lister <x@gmail.test>", ("name",)),  # a full display name
    (b'"Lister, Dave" <x@gmail.test>', ("name",)),
    (b"Kryten <x@gmail.test>", ()),  # a one-word display name is not a full name
    (b"Bob Smith <x@gmail.test>", ("name",)),  # bob.smith@example.org
    (b"bob_smith <x@gmail.test>", ("name",)),
    (b"Jane Doe <x@gmail.test>", ("name",)),  # jane_doe@example.org
    (b"bob.smith <bob.smith@gmail.test>", ()),  # the sender's own local part: claims nothing more
    (b"Bob Smith <bob.smith@gmail.test>", ("name",)),
    (b'"alice@example.org" <"alice@example.org"@evil.test>', ("address-name",)),  # own local part, still ours
    (b"Support <support@zendesk.test>", ()),  # role names, RFC 2142 and the like
    (b"Support Team <x@gmail.test>", ()),  # a local display name of generic words only
    (b"Billing <billing@stripe.test>", ()),
    (b"admin <admin@wordpress.test>", ()),
    (b"Newsletter <n@shop.test>", ()),
    (b"No-Reply <x@shop.test>", ()),
    (b"Alice Liddell (via Google Docs) <drive-shares-noreply@google.test>", ("name",)),  # a comment
    (b'"Alice Liddell (via Google Docs)" <drive-shares-noreply@google.test>', ("name",)),
    (b'"Alice (via Google Docs)" <drive-shares-noreply@google.test>', ()),
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


def unfolded(headers: bytes) -> list[bytes]:
    """The fields of ``headers``, unfolded (RFC 5322 2.2.3), after checking each line's length."""
    assert headers.endswith(b"\r\n") and all(len(line) <= 78 for line in headers.split(b"\r\n"))
    return headers.replace(b"\r\n ", b" ").split(b"\r\n")[:-1]


def test_warning_texts_in_plain_words() -> None:
    head = b"From: Bob <bob@xn--xample-2of.org>, \"Alice Liddell\" <al@gmail.test>\r\n\r\n"
    found = judge_head(head, DIRECTORY, SETTINGS)
    assert unfolded(found.headers) == [
        b"X-Hardmail-Warning: The sender's domain xn--xample-2of.org looks like your domain example.org "
        b"(it is written with letters of another alphabet: Cyrillic)",
        b"X-Hardmail-Warning: The sender's name matches a person in your organisation, but the message "
        b"came from outside (address al@gmail.test)"]
    assert found.headers.count(b"\r\n ") >= 2  # folded
    lines = found.notice_lines()
    assert lines[0].startswith("WARNING: The sender's domain xn--xample-2of.org")
    assert lines[-1] == "" and all(len(line) <= 72 for line in lines)


def test_warning_text_is_printable_ascii_whatever_the_sender_writes() -> None:
    head = "From: Alice Liddell <j\u00f6rg@b\u00e4d.test>\r\n\r\n".encode()
    text = judge_head(head, DIRECTORY, SETTINGS).headers
    assert unfolded(text) == [b"X-Hardmail-Warning: The sender's name matches a person in your organisation, "
                              b"but the message came from outside (address j?rg@xn--bd-via.test)"]
    head = b"From: =?utf-8?q?alice=40example.org=0D=0AX-Evil=3A_1?= <" + b"x" * 300 + b"@bad.test>\r\n\r\n"
    text = judge_head(head, DIRECTORY, SETTINGS).headers
    assert text.startswith(b"X-Hardmail-Warning: The sender's name is the address alice@example.org of your")
    fields = text.replace(b"\r\n ", b" ").split(b"\r\n")[:-1]
    assert text.isascii() and len(fields) == 1 and b"X-Evil" not in text and b"x" * 121 not in text
    assert all(len(line) <= 78 or b" " not in line.strip() for line in text.split(b"\r\n"))  # one long word


def test_a_delete_or_control_character_is_never_shown() -> None:
    for char in (b"\x7f", b"\x01", b"\x1b"):
        text = judge_head(b"From: Bob <bob@exa" + char + b"mple.org>\r\n\r\n", DIRECTORY, SETTINGS).headers
        assert b"exa?mple.org looks like your domain" in b" ".join(unfolded(text)), char
        assert all(32 <= byte < 127 for byte in text.replace(b"\r\n", b"")), char


def test_a_name_with_a_note_in_brackets_says_so() -> None:
    quoted = b'From: "Alice Liddell (via Google Docs)" <drive-shares-noreply@google.test>\r\n\r\n'
    finding, = judge_head(quoted, DIRECTORY, SETTINGS).findings
    assert finding.text.startswith("The sender's name is a person in your organisation followed by a note in "
                                   "brackets, as services sending on someone's behalf write it")
    assert "Google Docs" not in finding.text and finding.text.endswith("drive-shares-noreply@google.test)")
    comment = b"From: Alice Liddell (via Google Docs) <drive-shares-noreply@google.test>\r\n\r\n"
    finding, = judge_head(comment, DIRECTORY, SETTINGS).findings  # the comment is not part of the name
    assert finding.text.startswith("The sender's name matches a person in your organisation")


def test_allowed_domains_and_senders_are_never_warned_about() -> None:
    allowed = Settings.build(allow_domains=["Examp1e.org", "partner.test", "xn--bcher-kva.test"],
                             allow_senders=["Alice.Liddell@Gmail.test"])
    for value in (b"Bob <bob@examp1e.org>", b"Bob <bob@mail.examp1e.org>", b"Alice Liddell <a@partner.test>",
                  b"Alice Liddell <a@news.partner.test>", b'"Alice Liddell" <alice.liddell@gmail.test>',
                  "Alice Liddell <a@B\u00fccher.test>".encode()):
        assert verdict(value, allowed) == (), value
        assert verdict(value) != (), value
    for value in (b"Alice Liddell <x@gmail.test>", b"Alice Liddell <a@partner.test.evil.test>",
                  b"Alice Liddell <a@notpartner.test>", f"Alice Liddell <a@partner.t{FULLWIDTH_E}st>".encode()):
        assert verdict(value, allowed) == ("name",), value


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


def _compared_alone(candidate: str, name: str) -> str | None:
    """The look-alike test of one ASCII domain against one hosted domain, written out directly."""
    if candidate == name or candidate.endswith("." + name):
        return None
    size = name.count(".") + 1
    tail = ".".join(candidate.split(".")[-size:])
    if skeleton(tail) == skeleton(name):
        return "homograph"
    allowed = 1 if len(name) < 8 else 2
    if 1 <= min(osa_distance(tail, name, allowed), osa_distance(skeleton(tail), skeleton(name), allowed)) <= allowed:
        return "edit"
    return "prefix" if candidate.startswith(name + ".") else None


def test_the_index_finds_what_comparing_with_each_domain_finds() -> None:
    rng = random.Random(14)
    letters = "abcdefghijklmnopqrstuvwxyz01-"
    names = ["".join(rng.choices(letters[:26], k=rng.randint(3, 12))) + rng.choice([".org", ".com", ".co.uk"])
             for _ in range(150)]
    hosted = HostedDomains.build(names)
    for trial in range(400):
        word = list(rng.choice(names) if trial % 2 else "".join(rng.choices(letters, k=rng.randint(3, 12))) + ".org")
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(word) - 1)
            word[at:at + rng.choice((1, 2))] = rng.choice(([rng.choice(letters)], [], [word[at + 1], word[at]]))
        candidate = "".join(word)
        alone = [_compared_alone(candidate, name) for name in names]
        found = hosted.look_alike(candidate, 2)
        assert (found is not None) == any(alone), candidate
        if found is not None and found[0] == "edit":
            assert alone[found[1].order] == "edit" and "homograph" not in alone, candidate


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
