"""BODY[section] and BINARY[section] (hardmail.mime.sections) on small messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hardmail.mime import sections
from hardmail.mime.structure import parse_message


@dataclass(frozen=True)
class S:
    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()


INNER = b"Subject: inner\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naMOpbGxv\r\n"
MESSAGE = (b"Subject: outer\r\nFrom: a@x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 =\r\nau lait\r\n"
           b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + INNER + b"--b\r\n"
           b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--b--\r\n")
ROOT = parse_message(MESSAGE)


@pytest.mark.parametrize(("section", "expected"), [
    (S(), MESSAGE),
    (S(text="HEADER"), MESSAGE[:MESSAGE.index(b"\r\n\r\n") + 4]),
    (S(text="HEADER.FIELDS", fields=("FROM", "subject", "X-NONE")), b"Subject: outer\r\nFrom: a@x\r\n\r\n"),
    (S(text="HEADER.FIELDS.NOT", fields=("Content-Type",)), b"Subject: outer\r\nFrom: a@x\r\n\r\n"),
    (S((1,)), b"caf=C3=A9 =\r\nau lait"),
    (S((1,), "MIME"), b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
    (S((2,)), INNER.removesuffix(b"\r\n")),
    (S((2,), "HEADER"), INNER[:INNER.index(b"\r\n\r\n") + 4]),
    (S((2,), "HEADER.FIELDS", ("SUBJECT",)), b"Subject: inner\r\n\r\n"),
    (S((2,), "TEXT"), b"aMOpbGxv"),
    (S((2, 1)), b"aMOpbGxv"),  # a message that is not multipart: part 1 is its body
    (S((2, 1), "MIME"), INNER[:INNER.index(b"\r\n\r\n") + 4]),
    (S((1,), "HEADER"), b""),  # not a message/rfc822 part
    (S((4,)), b""), (S((1, 1)), b""), (S((2, 2)), b""), (S((0,)), b""),
])
def test_sections(section: S, expected: bytes) -> None:
    assert sections.fetch_section(MESSAGE, ROOT, section) == expected


def test_partial() -> None:
    assert sections.fetch_section(MESSAGE, ROOT, S((1,)), (5, 4)) == b"3=A9"
    assert sections.fetch_section(MESSAGE, ROOT, S((1,)), (500, 4)) == b""
    from_field = S(text="HEADER.FIELDS", fields=("FROM",))
    assert sections.fetch_section(MESSAGE, ROOT, from_field, (2, 100)) == b"om: a@x\r\n\r\n"


def test_non_multipart_message_part_one_is_its_body() -> None:
    data = b"Subject: x\r\n\r\nbody"
    root = parse_message(data)
    assert sections.fetch_section(data, root, S((1,))) == b"body"
    assert sections.fetch_section(data, root, S(text="TEXT")) == b"body"
    assert sections.fetch_section(data, root, S((1,), "MIME")) == b"Subject: x\r\n\r\n"


def test_binary() -> None:
    assert sections.binary_section(MESSAGE, ROOT, (1,)) == "café au lait".encode()
    assert sections.binary_size(MESSAGE, ROOT, (1,)) == len("café au lait".encode())
    assert sections.binary_section(MESSAGE, ROOT, (2, 1)) == "héllo".encode()
    assert sections.binary_section(MESSAGE, ROOT, (1,), (1, 3)) == "afé".encode()[:3]
    decoded_message = sections.binary_section(MESSAGE, ROOT, (2,))
    assert decoded_message == (b"Subject: inner\r\nContent-Type: text/plain\r\n"
                               b"Content-Transfer-Encoding: binary\r\n\r\n" + "héllo".encode())
    with pytest.raises(sections.UnknownCte):
        sections.binary_section(MESSAGE, ROOT, (3,))
    with pytest.raises(sections.UnknownCte):
        sections.binary_section(MESSAGE, ROOT, ())  # the whole message has that part in it
    assert sections.binary_section(MESSAGE, ROOT, (9,)) == b"" and sections.binary_size(MESSAGE, ROOT, (9,)) == 0


@pytest.mark.parametrize(("encoded", "decoded"), [
    (b"aGVsbG8=", b"hello"), (b"aGVs\r\nbG8=\r\n", b"hello"), (b"aGVsbG8", b"hello"), (b"a!G*V-s bG8=", b"hello"),
    (b"aGVsbG8=junk", b"hello"), (b"a", b""), (b"", b""),
])
def test_lenient_base64(encoded: bytes, decoded: bytes) -> None:
    assert sections.decode_base64(encoded) == decoded


def test_quoted_printable() -> None:
    assert sections.decode_quoted_printable(b"a=3Db  \r\nc=\r\nd =XY") == b"a=b\r\ncd =XY"
    assert sections.decode_body(b"x", "7bit") == b"x"


def test_any_section_of_any_corpus_message_never_raises() -> None:
    """Whatever a client asks: bytes, or UnknownCte for BINARY (nothing else escapes)."""
    import random

    from data.mime.imap_text import CORPUS
    from hardmail.mime.structure import crlf

    rng = random.Random(9)
    texts = [None, "HEADER", "TEXT", "MIME", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "header"]
    for path in sorted(CORPUS.glob("*.eml")) + sorted((CORPUS / "mutants").glob("*.eml"))[:40]:
        data = crlf(path.read_bytes())
        root = parse_message(data)
        for _ in range(60):
            part = tuple(rng.randrange(0, 5) for _ in range(rng.randrange(0, 5)))
            partial = (rng.randrange(0, 3000), rng.randrange(0, 3000)) if rng.random() < 0.5 else None
            section = S(part, rng.choice(texts), ("FROM", "x-y"))
            assert isinstance(sections.fetch_section(data, root, section, partial), bytes)
            try:
                sections.binary_section(data, root, part, partial)
                assert sections.binary_size(data, root, part) >= 0
            except sections.UnknownCte:
                pass
