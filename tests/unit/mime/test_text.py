"""Decoded text for SEARCH (hardmail.mime.text)."""

from __future__ import annotations

import pytest

from hardmail.mime.structure import parse_message
from hardmail.mime.text import MAX_BODY_TEXT, MessageText, contains, decode_header, fold, html_text


@pytest.mark.parametrize(("raw", "text"), [
    (b"=?iso-8859-1?q?J=F6rg_M=FCller?=", "Jörg Müller"),
    (b"=?UTF-8?B?w4lsb2RpZQ==?= =?UTF-8?Q?_L?=  tail", "Élodie L  tail"),  # RFC 2047 6.2
    (b"a =?utf-8?q?b?= c", "a b c"),
    (b"=?utf-8*en?q?x?=", "x"),  # RFC 2231 5: a language in the charset
    (b"=?x-unknown?q?kept?= =?utf-8?b?***?=", "=?x-unknown?q?kept?= =?utf-8?b?***?="),
    ("raw UTF-8 Bücher".encode(), "raw UTF-8 Bücher"),
    (b"latin-1 caf\xe9", "latin-1 café"),
    (b"=?ISO-2022-JP?B?GyRCJTUlJCVIGyhC?=", "サイト"),
])
def test_decode_header(raw: bytes, text: str) -> None:
    assert decode_header(raw) == text


def test_html_and_folding() -> None:
    markup = "<style>p{}</style><p>Caf&eacute; <b>au</b> lait<script>x</script>"
    assert " ".join(html_text(markup).split()) == "Café au lait"
    assert html_text("a <unclosed") == "a  " and html_text("<!-- never closed") == " "
    assert contains("GRÜSSE aus\r\n  Berlin", "grüße AUS berlin") and not contains("abc", "abd")
    assert fold("ǅ") == fold("ǆ")


def test_message_text() -> None:
    data = (b"Subject: =?utf-8?q?R=C3=A9union?=\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"<p>caf=E9</p>\r\n--b\r\nContent-Type: application/pdf\r\n\r\nPDFDATA\r\n--b\r\n"
            b"Content-Type: message/rfc822\r\n\r\nSubject: attached one\r\n\r\ninner body\r\n--b--\r\n")
    text = MessageText(data, parse_message(data))
    assert text.header("SUBJECT") == ["Réunion"] and text.has_header("subject") and not text.has_header("to")
    body = text.body_text()
    assert "café" in body and "inner body" in body and "PDFDATA" not in body
    assert "Subject: attached one" not in body  # the headers of parts are not BODY (as Dovecot)
    headers = text.headers_text()
    assert "Subject: Réunion" in headers and "Subject: attached one" in headers
    assert "Content-Type: application/pdf" in headers and "Réunion" in text.text()


def test_body_text_is_bounded() -> None:
    data = b"Content-Type: text/plain\r\n\r\n" + b"x" * (MAX_BODY_TEXT + 1000)
    assert len(MessageText(data, parse_message(data)).body_text()) == MAX_BODY_TEXT
