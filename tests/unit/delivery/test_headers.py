"""Trace headers: Received folding and sanitising, missing Date/Message-ID."""

from __future__ import annotations

import email.utils
from email.parser import BytesParser
from email.policy import default as default_policy

import pytest

from hardmail.delivery.headers import (
    missing_submission_headers,
    received_header,
    split_header_block,
    with_protocol,
)

WHEN = 1_795_964_400.0  # Sun, 29 Nov 2026 15:00:00 +0000

BASE = {
    "helo": "client.example",
    "peer_ip": "192.0.2.1",
    "peer_name": None,
    "hostname": "mail.example.org",
    "protocol": "ESMTPSA",
    "queue_id": "01HXABCDEFGHJKMNPQRS",
    "recipient": "bob@example.net",
    "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "bits": "256"},
    "authenticated": "alice@example.org",
    "when": WHEN,
}


def received(**changes) -> bytes:
    return received_header(**{**BASE, **changes})


def lines_of(header: bytes) -> list[bytes]:
    assert header.endswith(b"\r\n")
    return header[:-2].split(b"\r\n")


@pytest.mark.parametrize(
    ("esmtp", "tls", "auth", "utf8", "expected"),
    [
        (False, False, False, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, False, "ESMTPSA"),
        (True, False, False, True, "UTF8SMTP"),
        (True, True, False, True, "UTF8SMTPS"),
        (True, False, True, True, "UTF8SMTPA"),
        (True, True, True, True, "UTF8SMTPSA"),
    ],
)
def test_with_protocol(esmtp, tls, auth, utf8, expected):
    assert with_protocol(esmtp, tls, auth, utf8) == expected


def test_full_received_header():
    assert received() == (
        b"Received: from client.example (unknown [192.0.2.1])\r\n"
        b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
        b"\t(Authenticated sender: alice@example.org)\r\n"
        b"\tby mail.example.org (hardmail) with ESMTPSA id 01HXABCDEFGHJKMNPQRS\r\n"
        b"\tfor <bob@example.net>; Sun, 29 Nov 2026 15:00:00 +0000\r\n"
    )


def test_minimal_received_header_puts_the_semicolon_after_the_id():
    header = received(tls=None, authenticated=None, recipient=None, protocol="SMTP",
                      peer_name="client.example.com")
    assert header == (
        b"Received: from client.example (client.example.com [192.0.2.1])\r\n"
        b"\tby mail.example.org (hardmail) with SMTP id 01HXABCDEFGHJKMNPQRS;\r\n"
        b"\tSun, 29 Nov 2026 15:00:00 +0000\r\n"
    )


def test_ipv6_peer_uses_the_ipv6_address_literal():
    assert b"(unknown [IPv6:2001:db8::1])" in received(peer_ip="2001:0db8:0:0::1")


def test_long_values_are_folded_below_78_characters():
    header = received(
        helo="h" * 64,
        peer_name="a-rather-long-reverse-name.of-the-client.in-a-big-provider.example.net",
        peer_ip="2001:db8:1234:5678:9abc:def0:1234:5678",
        hostname="mx-01.a-long-host-name-for-the-server.example.org",
        authenticated="someone.with.a.long.name@subdomain.of.an.example.org",
    )
    lines = lines_of(header)
    assert len(lines) > 5
    assert all(len(line) < 78 for line in lines)
    assert all(line.startswith(b"\t") for line in lines[1:])


def test_parses_as_one_received_field():
    message = BytesParser(policy=default_policy).parsebytes(received() + b"Subject: x\r\n\r\nbody")
    assert len(message.get_all("Received")) == 1
    value = str(message["Received"])
    assert "by mail.example.org" in value
    assert value.endswith("Sun, 29 Nov 2026 15:00:00 +0000")


@pytest.mark.parametrize(
    "field",
    ["helo", "peer_name", "hostname", "queue_id", "authenticated", "recipient"],
)
def test_client_values_cannot_inject_lines_or_comments(field):
    evil = "x)\r\nX-Injected: yes\n(y;\x00 <z> \\"
    header = received(**{field: evil})
    lines = lines_of(header)
    assert not any(line.startswith(b"X-Injected") for line in lines)
    assert b"\n" not in header.replace(b"\r\n", b"")
    assert b"\r" not in header.replace(b"\r\n", b"")
    assert b"\x00" not in header
    assert header.count(b"(") == header.count(b")")
    assert header.count(b";") == 1


def test_tls_values_are_sanitised():
    header = received(tls={"version": "TLSv1.3)\r\n", "cipher": "A B(C", "bits": "256))"})
    assert header.count(b"(") == header.count(b")")
    assert b"\r\n\t(using TLSv1.3___ with cipher A_B_C (256__/256__ bits))" in header


def test_helo_is_capped():
    header = received(helo="a" * 500)
    assert b"a" * 64 in header
    assert b"a" * 65 not in header


def test_empty_helo_becomes_unknown():
    assert received(helo="").startswith(b"Received: from unknown (unknown [192.0.2.1])")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", (b"A: 1\r\nB: 2\r\n", True)),
        (b"A: 1\r\n folded\r\n\r\n", (b"A: 1\r\n folded\r\n", True)),
        (b"\r\nbody only", (b"", True)),
        (b"A: 1\r\nB: 2\r\n", (b"A: 1\r\nB: 2\r\n", False)),
        (b"A: 1\r\nB: partial", (b"A: 1\r\nB: partial", False)),
        (b"", (b"", False)),
    ],
)
def test_split_header_block(data, expected):
    assert split_header_block(data) == expected


def test_both_missing_headers_are_generated():
    added = missing_submission_headers(b"From: a@example.org\r\nSubject: x\r\n",
                                       hostname="mail.example.org", when=WHEN)
    message_id_line, date_line = lines_of(added)
    assert message_id_line.startswith(b"Message-ID: <")
    assert message_id_line.endswith(b"@mail.example.org>")
    assert date_line == b"Date: Sun, 29 Nov 2026 15:00:00 +0000"
    parsed = email.utils.parsedate_to_datetime(date_line.split(b": ", 1)[1].decode())
    assert parsed.timestamp() == WHEN


def test_generated_message_ids_are_unique():
    ids = {missing_submission_headers(b"", hostname="h.example", when=WHEN) for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    "block",
    [
        b"Date: Sun, 29 Nov 2026 15:00:00 +0000\r\nMessage-ID: <1@x>\r\n",
        b"DATE: Sun, 29 Nov 2026\r\n 15:00:00 +0000\r\nmessage-id:\r\n <1@x>\r\n",
        b"date : obsolete spacing\r\nMeSsAgE-Id :<1@x>\r\n",
    ],
)
def test_nothing_added_when_present(block):
    assert missing_submission_headers(block, hostname="h.example", when=WHEN) == b""


def test_folded_continuation_that_looks_like_a_header_does_not_count():
    block = b"Subject: about\r\n\tDate: in a continuation line\r\nMessage-ID: <1@x>\r\n"
    added = missing_submission_headers(block, hostname="h.example", when=WHEN)
    assert added.startswith(b"Date: ")


def test_only_the_missing_one_is_added():
    added = missing_submission_headers(b"Date: Sun, 29 Nov 2026 15:00:00 +0000\r\n",
                                       hostname="h.example", when=WHEN)
    assert added.startswith(b"Message-ID: <") and b"Date:" not in added
