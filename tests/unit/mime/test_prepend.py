"""A warning at the top of the visible text, in the part's own transfer encoding and charset;
read back with the standard library's parser (another reader than ours)."""

from __future__ import annotations

import base64
import email
import email.policy
import quopri

import pytest

from hardmail.mime.prepend import encoded_lines, insertion

LINES = ["WARNING: The sender's domain examp1e.org looks like your domain", "example.org (a=b).", ""]
WARNING = "WARNING: The sender's domain examp1e.org looks like your domain\nexample.org (a=b).\n\n"


def changed(message: bytes, window: int | None = None) -> bytes | None:
    head, _, body = message.partition(b"\r\n\r\n")
    head += b"\r\n\r\n"
    start = body if window is None else body[:window]
    found = insertion(head, start, LINES)
    if found is None:
        return None
    at, inserted = found
    return head + body[:at] + inserted + body[at:]


def first_text(message: bytes) -> str:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    part = parsed.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


PLAIN = b"From: a@b.test\r\nSubject: s\r\n\r\nHello Bob,\r\nsee you.\r\n"


def test_plain_message_without_mime() -> None:
    out = changed(PLAIN)
    assert out is not None
    assert first_text(out) == WARNING + "Hello Bob,\nsee you.\n"


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1", "windows-1252", "koi8-r", "us-ascii"])
@pytest.mark.parametrize("encoding", ["7bit", "8bit", "quoted-printable", "base64"])
def test_every_encoding_and_charset(charset: str, encoding: str) -> None:
    text = "Gr\u00fc\u00dfe a=b\n" if charset not in ("us-ascii", "koi8-r") else "Greetings a=b\n"
    raw = text.replace("\n", "\r\n").encode(charset)
    body = {"7bit": raw, "8bit": raw, "quoted-printable": quopri.encodestring(raw),
            "base64": base64.encodebytes(raw).replace(b"\n", b"\r\n")}[encoding]
    message = (f"From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n"
               f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body
    out = changed(message)
    assert out is not None
    assert first_text(out) == WARNING + text


@pytest.mark.parametrize("length", range(0, 6))
def test_base64_whatever_the_text_length(length: int) -> None:
    lines = ["x" * length, ""]
    inserted = encoded_lines(lines, "base64")
    assert inserted is not None and b"=" not in inserted
    original = base64.b64encode(b"rest of the text")
    assert base64.b64decode(inserted.replace(b"\r\n", b"") + original).endswith(b"\r\n\r\nrest of the text")
    assert base64.b64decode(inserted.replace(b"\r\n", b"")).rstrip(b"\r\n").rstrip(b" ") == b"x" * length


NESTED = (b'From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
          b"This is MIME.\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
          b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
          b"\r\nplain =C3=BC\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--\r\n"
          b"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n"
          b"--outer--\r\n")


def test_first_text_part_of_nested_multiparts() -> None:
    out = changed(NESTED)
    assert out is not None
    assert first_text(out) == WARNING + "plain \u00fc"
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    html = parsed.get_body(preferencelist=("html",))
    assert html is not None and "WARNING" not in str(html.get_content())
    assert out.replace(encoded_lines(LINES, "quoted-printable") or b"-", b"") == NESTED  # nothing else moved


@pytest.mark.parametrize(("message", "why"), [
    (NESTED.replace(b"multipart/mixed", b"multipart/signed"), "a signature covers the bytes"),
    (NESTED.replace(b"multipart/mixed", b"multipart/encrypted"), "encrypted"),
    (PLAIN.replace(b"Subject: s", b"Content-Type: text/html"), "HTML"),
    (PLAIN.replace(b"Subject: s", b"Content-Type: text/plain; charset=utf-16"), "ASCII is not ASCII"),
    (PLAIN.replace(b"Subject: s", b"Content-Type: text/plain; charset=x-unknown"), "unknown charset"),
    (PLAIN.replace(b"Subject: s", b"Content-Type: text/plain; charset=cp500"), "EBCDIC"),
    (PLAIN.replace(b"Subject: s", b"Content-Transfer-Encoding: x-uuencode"), "unknown encoding"),
    (PLAIN.replace(b"Subject: s", b"Content-Disposition: attachment; filename=a.txt"), "an attachment"),
    (NESTED.replace(b"multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain",
                    b"image/png\r\n\r\n--inner\r\nContent-Type: text/plain"), "the first part is no text"),
])
def test_nothing_when_the_text_cannot_be_changed_safely(message: bytes, why: str) -> None:
    assert changed(message) is None, why


def test_nothing_when_the_text_part_starts_past_the_bytes_given() -> None:
    head_end = NESTED.index(b"\r\n\r\n") + 4
    part_header_end = NESTED.index(b"quoted-printable\r\n\r\n") + len(b"quoted-printable\r\n\r\n") - head_end
    assert changed(NESTED, window=part_header_end - 3) is None  # its header block is cut
    assert changed(NESTED, window=part_header_end) is not None
