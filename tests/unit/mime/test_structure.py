"""The MIME tree (hardmail.mime.structure): offsets, delimiters as RFC 2046 5.1.1 and Dovecot read
them, malformed input, limits, bare LF, and hostile shapes that must stay linear."""

from __future__ import annotations

import random

from hardmail.mime.bodystructure import body_structure
from hardmail.mime.structure import MAX_DEPTH, MAX_PARTS, crlf, parse_message


def mixed(*parts: bytes, boundary: bytes = b"b", close: bool = True, epilogue: bytes = b"") -> bytes:
    head = b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\npreamble\r\n"
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return head + body + (b"--" + boundary + b"--\r\n" + epilogue if close else b"")


def test_offsets_of_parts_and_the_line_end_before_a_delimiter() -> None:
    data = mixed(b"Content-Type: text/plain\r\n\r\nhello\r\n", b"\r\nno header")
    root = parse_message(data)
    first, second = root.children
    assert data[first.start:first.header_end] == b"Content-Type: text/plain\r\n"
    assert data[first.body_start:first.body_end] == b"hello\r\n"  # the CRLF before "--b" is not its
    assert first.lines == 1 and second.lines == 0
    assert (second.header.fields, data[second.body_start:second.body_end]) == ((), b"no header")
    assert second.content_type.value == "text/plain" and not second.explicit_type
    assert root.body_start == data.index(b"preamble") and root.body_end == len(data)


def test_delimiters_need_the_whole_boundary_and_only_white_space_after_it() -> None:
    data = (b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n\r\none\r\n--abcd\r\n"
            b"--abc x\r\n--abc \t\r\n\r\ntwo\r\n--abc--trailing\r\n")
    root = parse_message(data)
    assert [data[p.body_start:p.body_end] for p in root.children] == [b"one\r\n--abcd\r\n--abc x", b"two"]


def test_missing_close_delimiter_ends_at_the_message_end() -> None:
    data = mixed(b"\r\none", b"\r\ntwo\r\n", close=False)
    root = parse_message(data)
    assert [data[p.body_start:p.body_end] for p in root.children] == [b"one", b"two\r\n\r\n"]


def test_an_inner_multipart_without_close_ends_at_the_outer_delimiter() -> None:
    inner = b"Content-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\ninner"
    data = mixed(inner, b"\r\nlast")
    root = parse_message(data)
    assert [len(p.children) for p in root.children] == [1, 0]
    assert data[root.children[0].children[0].body_start:root.children[0].children[0].body_end] == b"inner"
    assert data[root.children[1].body_start:root.children[1].body_end] == b"last"


def test_multipart_without_any_delimiter_shows_one_empty_text_part() -> None:
    data = b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts here\r\n"
    root = parse_message(data)
    assert root.children == [] and root.is_multipart
    bodies = body_structure(root, data)[0]
    assert list(bodies) == [["text", "plain", ["charset", "us-ascii"], None, None, "7bit", 0, 0,
                             None, None, None, None]]


def test_multipart_without_boundary_has_no_parts() -> None:
    data = b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n"
    root = parse_message(data)
    assert root.is_multipart and root.children == [] and not root.overflow  # as Dovecot reads it
    assert body_structure(root, data, extended=False)[1:] == ["mixed"]


def test_empty_parts_of_a_digest_are_messages() -> None:
    data = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n--d\r\n\r\nSubject: x\r\n\r\ny\r\n--d--"
    kinds = [p.content_type.value for p in parse_message(data).children]
    assert kinds == ["message/rfc822", "message/rfc822"]  # RFC 2046 5.1.5, as Dovecot


def test_a_delimiter_cut_at_the_end_starts_no_part() -> None:
    head = b"Content-Type: multipart/mixed; boundary=d\r\n\r\n--d\r\n\r\nx\r\n--d"
    assert len(parse_message(head).children) == 1  # as Dovecot reads it
    assert len(parse_message(head + b"\r\n").children) == 2
    assert len(parse_message(head + b"\r").children) == 1


def test_header_without_empty_line_ends_at_the_next_delimiter() -> None:
    data = mixed(b"Content-Type: text/html\r\nX-Other: y", b"\r\nsecond")
    root = parse_message(data)
    first = root.children[0]
    assert first.content_type.value == "text/html"
    assert [f.name for f in first.header.fields] == ["content-type", "x-other"]
    assert first.body_start == first.body_end


def test_message_rfc822_and_digest_default() -> None:
    inner = b"Subject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n"
    digest = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in digest\r\n\r\nbody\r\n--d--"
    data = mixed(b"Content-Type: message/rfc822\r\n\r\n" + inner, digest)
    root = parse_message(data)
    enclosed = root.children[0].message
    assert enclosed is not None and enclosed.is_multipart
    assert enclosed.header.value(enclosed.header.fields[0]) == "inner"
    digest_part = root.children[1].children[0]
    assert digest_part.content_type.value == "message/rfc822" and digest_part.message is not None
    assert [p.content_type.value for p in root.walk()] == [
        "multipart/mixed", "message/rfc822", "multipart/mixed", "text/plain", "multipart/digest",
        "message/rfc822", "text/plain"]


def test_bare_lf_and_crlf() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>x</p>\n--b--\n"
    root = parse_message(data)
    assert root.children[0].content_type.value == "text/html"
    assert data[root.children[0].body_start:root.children[0].body_end] == b"<p>x</p>"
    assert crlf(data) == data.replace(b"\n", b"\r\n") and crlf(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert crlf(b"a\r\nb\nc") == b"a\r\nb\r\nc"


def test_depth_limit_makes_deeper_parts_leaves() -> None:
    level = b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n"
    data = b"".join(level % (i, i) for i in range(MAX_DEPTH + 10))
    root = parse_message(data + b"\r\nend")
    parts = root.walk()
    assert len(parts) == MAX_DEPTH + 1 and parts[-1].overflow
    body_structure(root, data)


def test_part_limit() -> None:
    data = mixed(*([b"\r\nx"] * (MAX_PARTS + 100)))
    root = parse_message(data)
    assert len(root.walk()) == MAX_PARTS and root.body_end == len(data)
    body_structure(root, data)


def test_hostile_shapes_parse() -> None:
    """Each would take quadratic time with a search from every part start; here they are read
    in one pass (no time is measured: a quadratic version does not finish in the test run)."""
    head = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
    shapes = [
        head + b"--b\r\nX: y\r\n" * 50000,  # parts whose headers never end
        head + b"--b\r\n\r\n" + b"--c\r\n" * 200000,  # lines that look like delimiters
        b"X: y\r\n" * 100000,  # a header without an end
        b"Content-Type: message/rfc822\r\n\r\n" * 1000 + b"x",  # messages in messages
        head + b"\r\n" * 300000,
    ]
    for data in shapes:
        root = parse_message(data)
        body_structure(root, data)


def test_random_bytes_and_mutations_never_raise() -> None:
    rng = random.Random(12)
    base = mixed(b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=",
                 b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\ny")
    alphabet = b"-\r\n:;=\"()<>@ \tab\x00\xff"
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 8)):
            at = rng.randrange(len(data))
            data[at:at + rng.randrange(3)] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(4)))
        parse_message(bytes(data))
        body_structure(parse_message(bytes(data)), bytes(data))
    for _ in range(300):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(200)))
        body_structure(parse_message(data), data)


def test_message_without_mime_version_or_content_type_shows_no_content_fields() -> None:
    """RFC 2045 4 (as Dovecot reads it): such a message is not MIME; BODYSTRUCTURE shows 7bit and
    none of its Content-* fields, while BINARY still undoes its transfer encoding."""
    from hardmail.mime import sections

    data = b"Content-Transfer-Encoding: base64\r\nContent-ID: <x@y>\r\n\r\naGVsbG8=\r\n"
    root = parse_message(data)
    assert not root.mime
    assert body_structure(root, data) == ["text", "plain", ["charset", b"us-ascii"], None, None, "7bit", 10, 1,
                                          None, None, None, None]
    assert sections.binary_section(data, root, (1,)) == b"hello"
    with_version = b"MIME-Version: 1.0\r\n" + data
    assert body_structure(parse_message(with_version), with_version)[3:6] == [b"<x@y>", None, "base64"]


def test_line_end_before_a_delimiter_is_never_the_parts() -> None:
    """RFC 2046 5.1.1: the CRLF before "--boundary" belongs to the delimiter, also when it ends a
    header that has no empty line, or is the only thing in a part (as Dovecot reads it)."""
    from hardmail.mime import sections

    data = mixed(b"Content-Type: text/plain\r\nX-A: 1", b"", b"Content-Type: text/html\r\n")
    root = parse_message(data)
    first, empty, _third = root.children
    assert data[first.start:first.body_start] == b"Content-Type: text/plain\r\nX-A: 1"
    assert (empty.start, empty.body_start, empty.body_end) == (empty.start, empty.start, empty.start)
    assert sections.fetch_section(data, root, _Spec((3,), "MIME")) == b"Content-Type: text/html\r\n"


def test_long_close_delimiter_line_after_a_header() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX: y\r\n--b--" + b"x" * 500 + b"\r\nepilogue"
    root = parse_message(data)
    assert len(root.children) == 1 and root.children[0].header.fields[0].name == "x"
    assert root.body_end == len(data)


class _Spec:
    def __init__(self, part: tuple[int, ...], text: str | None) -> None:
        self.part, self.text, self.fields = part, text, ()
