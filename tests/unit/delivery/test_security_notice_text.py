"""The words and headers of the security notices."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from hardmail.delivery.security_notice_text import (
    Digest,
    NoticeHeader,
    SourceSummary,
    credential_notice,
    digest_notice,
    sign_in_notice,
    when_text,
)
from hardmail.store.ports_credentials import AppPassword, LoginEvent

AT = datetime(2024, 1, 8, 9, 30, 12, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
HEADER = NoticeHeader("alice@example.org", "postmaster@example.org", "mail.example.org", AT.timestamp(), BERLIN)


def parsed(data: bytes) -> tuple[EmailMessage, str]:
    message = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_content()
    assert isinstance(body, str)
    return message, body.replace("\r\n", "\n")


def login(**fields: str) -> LoginEvent:
    values = {"protocol": "imap", "mechanism": "plain", "client_ip": "192.0.2.7", "tls_version": "TLSv1.3",
              "detail": "password"} | fields
    return LoginEvent(AT, "alice@example.org", "login", "success", **values)


def test_when_text_gives_utc_and_local_time() -> None:
    assert when_text(AT, BERLIN) == "2024-01-08 09:30:12 UTC (10:30:12 CET, server time)"
    assert when_text(AT, UTC) == "2024-01-08 09:30:12 UTC"
    late = AT.replace(hour=23, tzinfo=None)  # a store's naive UTC
    assert when_text(late, BERLIN) == "2024-01-08 23:30:12 UTC (2024-01-09 00:30:12 CET, server time)"


def test_sign_in_notice_headers() -> None:
    data = sign_in_notice(HEADER, login(), "192.0.2.0/24")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    message, _body = parsed(data)
    assert message["From"] == "Mail server security <postmaster@example.org>"
    assert message["To"] == "alice@example.org"
    assert message["Subject"] == "Security notice: new sign-in to your mailbox"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Mon, 08 Jan 2024 09:30:12 +0000"
    assert str(message["Message-ID"]).endswith("@mail.example.org>")
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"


def test_sign_in_notice_says_when_where_how_and_what_to_do() -> None:
    _message, body = parsed(sign_in_notice(HEADER, login(), "192.0.2.0/24"))
    assert "When:   2024-01-08 09:30:12 UTC (10:30:12 CET, server time)" in body
    assert "From:   192.0.2.7 (network 192.0.2.0/24)" in body
    assert "How:    IMAP (reading mail), PLAIN, over TLSv1.3" in body
    assert "Client:" not in body
    assert "hardmail account passwd alice@example.org" in body
    assert "hardmail account app-password list alice@example.org" in body
    assert "hardmail account app-password revoke alice@example.org NAME" in body


def test_sign_in_with_an_app_password_without_tls() -> None:
    event = login(protocol="smtp", mechanism="login", tls_version="", detail="app password 'phone'")
    _message, body = parsed(sign_in_notice(HEADER, event, ""))
    assert "From:   192.0.2.7\n" in body
    assert "How:    SMTP (sending mail), LOGIN, without TLS" in body
    assert "Client: a program using the app password 'phone'" in body


def test_help_url_replaces_the_commands() -> None:
    header = NoticeHeader("alice@example.org", "notices@example.org", "mail.example.org", AT.timestamp(), UTC,
                          "https://mail.example.org/security")
    _message, body = parsed(sign_in_notice(header, login(), ""))
    assert "go to https://mail.example.org/security" in body
    assert "hardmail account passwd" not in body


def test_credential_notices() -> None:
    created = LoginEvent(AT, "alice@example.org", "app-password-created", "done", "admin",
                         detail="'phone' for imap,smtp")
    message, body = parsed(credential_notice(HEADER, created))
    assert message["Subject"] == "Security notice: a new app password for your mailbox"
    assert "Which:  'phone' for imap,smtp" in body and "By:     an administrator" in body
    for kind, words in (("2fa-disabled", "Two-factor authentication was turned off"),
                        ("password-changed", "The password of your mailbox alice@example.org was changed")):
        _message, body = parsed(credential_notice(HEADER, LoginEvent(AT, "alice@example.org", kind, "done", "admin")))
        assert words in body


def test_digest() -> None:
    app_passwords = [AppPassword(1, "alice@example.org", "phone", frozenset({"imap", "smtp"}), AT,
                                 last_used_at=AT, last_used_ip="192.0.2.7"),
                     AppPassword(2, "alice@example.org", "old laptop", frozenset({"imap"}), AT)]
    digest = Digest(AT, AT, [SourceSummary("192.0.2.7", 3, ("imap", "smtp"), AT)],
                    [SourceSummary("198.51.100.9", 1, ("smtp",), AT)], app_passwords)
    message, body = parsed(digest_notice(HEADER, digest))
    assert message["Subject"] == "Security notice: your weekly sign-in summary"
    assert "Sign-ins: 3\n  192.0.2.7: 3 times over IMAP, SMTP, last 2024-01-08 09:30 UTC" in body
    assert "Failed sign-in attempts against your account: 1\n  198.51.100.9: once over SMTP" in body
    assert "'phone' (imap, smtp), created 2024-01-08: last used 2024-01-08 09:30 UTC from 192.0.2.7" in body
    assert "'old laptop' (imap), created 2024-01-08: never used" in body
    assert "hardmail account digest alice@example.org off" in body
    _message, empty = parsed(digest_notice(HEADER, Digest(AT, AT)))
    assert "Sign-ins: 0\n  none" in empty and "App passwords: 0\n  none" in empty


def test_non_ascii_account() -> None:
    header = NoticeHeader("jürgen@example.org", "postmaster@example.org", "mail.example.org", AT.timestamp())
    data = sign_in_notice(header, login(), "")
    assert "To: <jürgen@example.org>".encode() in data
    _message, body = parsed(data)
    assert "hardmail account passwd jürgen@example.org" in body
