"""RFC 3464 notices, as Python's email package reads them."""

from __future__ import annotations

import email

from hardmail.delivery.dsn import Notice, RecipientReport, build_notice, should_notify, status_from_reply

NOTICE = Notice("Q1", "alice@example.test", 1_700_000_000.0, "mail.example.test")
REPORT = RecipientReport("bob@dest.example", "failed", "5.1.1", "550 5.1.1 no such user", "mx.dest.example")
ORIGINAL = b"From: alice@example.test\r\nSubject: hello\r\n\r\n" + b"x" * 200 + b"\r\n"


def test_the_notice_is_a_delivery_status_report() -> None:
    message = email.message_from_bytes(build_notice(NOTICE, [REPORT], ORIGINAL, now=1_700_000_100.0))
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["Auto-Submitted"] == "auto-replied"
    text, status, original = message.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    per_message, recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert recipient["Final-Recipient"] == "rfc822; bob@dest.example"
    assert recipient["Action"] == "failed" and recipient["Status"] == "5.1.1"
    assert original.get_content_type() == "message/rfc822"


def test_a_large_original_is_quoted_by_its_headers_only() -> None:
    raw = build_notice(NOTICE, [REPORT], ORIGINAL, full_limit=100, now=1_700_000_100.0)
    message = email.message_from_bytes(raw)
    original = message.get_payload()[2]  # type: ignore[index]
    assert original.get_content_type() == "text/rfc822-headers"
    assert b"x" * 200 not in raw and b"Subject: hello" in raw


def test_no_notice_for_a_null_sender_or_the_mailer_daemon() -> None:
    assert should_notify("alice@example.test")
    assert not should_notify("")
    assert not should_notify("MAILER-DAEMON@example.net")


def test_status_codes_come_from_the_reply() -> None:
    assert status_from_reply(550, "5.7.1 relaying denied", "5.0.0") == "5.7.1"
    assert status_from_reply(550, "mailbox unavailable", "5.0.0") == "5.0.0"
    assert status_from_reply(None, "5.1.10 null MX", "5.0.0") == "5.1.10"
    assert status_from_reply(451, "try later", "5.0.0") == "4.0.0"
