"""Content-Type / Content-Disposition / Content-Language values (hardmail.mime.params)."""

from __future__ import annotations

import random

import pytest

from hardmail.mime.params import decode_rfc2231, parse_content_type, parse_disposition, parse_language


def test_type_parameters_quoting_comments_and_case() -> None:
    value = parse_content_type(b'Text/HTML (c) ; Charset="utf\\-8" (x); format = flowed;;junk; name="a;b"')
    assert value.value == "text/html" and value.original == ("Text", "HTML")
    assert value.params == (("Charset", b"utf-8"), ("format", b"flowed"), ("name", b"a;b"))
    assert value.param("charset") == b"utf-8" and value.param("missing") is None


@pytest.mark.parametrize("raw", [b"", b"/plain", b"(only a comment)", b"\xff/\xfe"])
def test_unreadable_type_is_empty(raw: bytes) -> None:
    assert parse_content_type(raw).value == ""


@pytest.mark.parametrize("raw", [b"text", b"Text/", b"text (c)"])
def test_type_without_subtype_at_the_end_is_kept(raw: bytes) -> None:
    value = parse_content_type(raw)  # as Dovecot shows it: ("text" "")
    assert (value.value, value.original[1]) == ("text/", "")


def test_type_without_subtype_before_parameters_is_empty() -> None:
    value = parse_content_type(b"text; charset=us-ascii")  # as Dovecot shows it: ("" "") NIL
    assert (value.value, value.original, value.params) == ("/", ("", ""), ())


def test_rfc2231_continuations_and_charsets() -> None:
    value = parse_content_type(b"application/pdf; a=1; title*1*=%20vom; title*0*=UTF-8''%C3%9Cberweisung;"
                               b" title*2=\" 28.06\"; NAME*0=\"long \"; NAME*1=name.txt; x*=iso-8859-1'de'Gr%FC%DFe")
    # RFC 2231 3: sections joined in number order; as Dovecot orders them, the plain parameters
    # first, then those with a "*" by name; x* is numbered like NAME*1 before it (as Dovecot)
    assert value.params == (("a", b"1"), ("NAME", b"long name.txt"),
                            ("title*", b"UTF-8''%C3%9Cberweisung%20vom 28.06"), ("x*1*", b"iso-8859-1'de'Gr%FC%DFe"))
    assert value.decoded("title") == "Überweisung vom 28.06"
    assert value.decoded("name") == "long name.txt"
    assert parse_content_type(b"a/b; x*=iso-8859-1'de'Gr%FC%DFe").decoded("x") == "Grüße"
    assert decode_rfc2231(b"no-such-charset''%C3%A9") == "é"


def test_lone_sections_kept_as_dovecot_shows_them() -> None:
    # Dovecot numbers a "name*" like the section before it and keeps sections that do not count
    # from 0 one by one (its BODYSTRUCTURE of tests/data/mime/rfc2231_params.eml)
    value = parse_content_type(b"text/plain; name*0=\"long file \"; name*1=\"name.txt\"; charset*=us-ascii'en'us-ascii")
    assert value.params == (("charset*1*", b"us-ascii'en'us-ascii"), ("name", b"long file name.txt"))
    assert parse_content_type(b"application/pdf; name*1*=%32%38").params == (("name*1*", b"%32%38"),)
    assert parse_content_type(b"text/plain; charset*=ansi''us-ascii").params == (("charset*", b"ansi''us-ascii"),)


def test_disposition_and_language() -> None:
    value = parse_disposition(b'INLINE; FILENAME="a b.png"; size=12')
    assert (value.value, value.original[0]) == ("inline", "INLINE")
    assert value.param("filename") == b"a b.png"
    assert parse_language(b"en-GB, fr (French) ,, \"de\"") == [b"en-GB", b"fr", b"de"]
    assert parse_language(b"") == []


def test_random_values_never_raise() -> None:
    rng = random.Random(3)
    alphabet = b"abc/;=\"'*0123%()\\ \t\r\n\xc3\xa9,"
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        parse_content_type(raw).decoded("a")
        parse_disposition(raw)
        parse_language(raw)
