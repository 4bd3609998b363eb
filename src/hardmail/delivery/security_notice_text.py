"""The words of the security notices the server delivers into users' INBOXes: a sign-in from a
new source, a credential change (app password created, two-factor authentication turned off,
password changed) and the weekly digest.

Pure functions: facts in, a complete message out (``text/plain; charset=utf-8``, CRLF line
endings). Each message comes from the server itself, ``Auto-Submitted: auto-generated`` (RFC 3834
5) so that no vacation responder answers it, with ``Date`` and ``Message-ID`` (RFC 5322 3.6). A
notice says what happened, when (UTC and the server's local time), from where and how, and what
to do if it was not the user. It never holds a secret: no password, no app-password value, no
TOTP secret (the facts given here have none; an app password appears by its name only).
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.charset import QP, Charset
from email.mime.text import MIMEText
from email.utils import make_msgid

from hardmail.delivery.headers import rfc5322_date
from hardmail.store.ports_credentials import AppPassword, LoginEvent

_QP_UTF8 = Charset("utf-8")
_QP_UTF8.body_encoding = QP  # readable in a mail client's source view

SUBJECT_SIGN_IN = "Security notice: new sign-in to your mailbox"
SUBJECT_REFUSED = "Security notice: your password was used, the sign-in was refused"
SUBJECT_DIGEST = "Security notice: your weekly sign-in summary"
CREDENTIAL_SUBJECTS = {
    "app-password-created": "Security notice: a new app password for your mailbox",
    "2fa-disabled": "Security notice: two-factor authentication turned off",
    "password-changed": "Security notice: your mailbox password was changed",
}
_CREDENTIAL_WHAT = {
    "app-password-created": "A new app password was created for your mailbox {account}.",
    "2fa-disabled": "Two-factor authentication was turned off for your mailbox {account}: "
                    "your password alone now lets anyone who knows it sign in.",
    "password-changed": "The password of your mailbox {account} was changed.",
}
_PROTOCOLS = {"smtp": "SMTP (sending mail)", "imap": "IMAP (reading mail)", "pop3": "POP3 (reading mail)",
              "admin": "an administrator's command"}


@dataclass(frozen=True, slots=True)
class NoticeHeader:
    """Who a notice is for and where it comes from."""

    account: str  # the recipient: the account itself
    sender: str  # From: notices.sender, or postmaster@ the account's domain
    hostname: str  # the server's name (Message-ID, the closing line)
    now: float  # when the notice is made (Date)
    zone: tzinfo | None = None  # the server's local time zone; None: this process's
    help_url: str = ""  # notices.help_url


@dataclass(frozen=True, slots=True)
class SourceSummary:
    """One source address in the digest: how often, over what, and when last."""

    ip: str
    count: int
    protocols: tuple[str, ...]
    last: datetime


@dataclass(frozen=True, slots=True)
class Digest:
    start: datetime
    end: datetime
    sign_ins: Sequence[SourceSummary] = ()
    failures: Sequence[SourceSummary] = ()
    app_passwords: Sequence[AppPassword] = field(default_factory=tuple)


# time and place


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime (a store may give naive UTC ones)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def when_text(moment: datetime, zone: tzinfo | None) -> str:
    """``2026-01-05 09:30:12 UTC (10:30:12 CET, server time)``; the local part only when it differs."""
    moment = utc(moment)
    local = moment.astimezone(zone) if zone is not None else moment.astimezone()
    text = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if local.utcoffset() != moment.utcoffset():
        day = "" if local.date() == moment.date() else f"{local:%Y-%m-%d} "
        text += f" ({day}{local:%H:%M:%S} {local.tzname() or ''}, server time)".replace(" ,", ",")
    return text


def _short_when(moment: datetime) -> str:
    return f"{utc(moment):%Y-%m-%d %H:%M} UTC"


def how_text(event: LoginEvent) -> str:
    """``IMAP (reading mail), PLAIN, over TLSv1.3``: the protocol, mechanism and TLS version known."""
    parts = [_PROTOCOLS.get(event.protocol, event.protocol.upper() or "unknown protocol")]
    if event.mechanism:
        parts.append(event.mechanism.upper())
    parts.append(f"over {event.tls_version}" if event.tls_version else "without TLS")
    return ", ".join(parts)


def client_text(event: LoginEvent) -> str:
    """The program, when the login says which: an app password is known by its name."""
    if event.detail.startswith("app password "):
        return f"a program using the {event.detail}"
    return ""


# what to do


def _advice(header: NoticeHeader) -> list[str]:
    account = header.account
    lines = ["If this was not you, someone else may know your password. Act now:"]
    if header.help_url:
        lines += [f"  - go to {header.help_url} to change your password and revoke app passwords",
                  "    you do not recognise, or ask your administrator to do it for you;"]
    else:
        lines += ["  - ask your administrator to change your password:",
                  f"      hardmail account passwd {account}",
                  "  - and to revoke every app password you do not recognise:",
                  f"      hardmail account app-password list {account}",
                  f"      hardmail account app-password revoke {account} NAME"]
    lines += ["  - two-factor authentication makes a stolen password useless on its own:",
              f"      hardmail account 2fa enable {account}"]
    return lines


def _closing(header: NoticeHeader) -> list[str]:
    return ["", "--", f"This notice was written automatically by the mail server {header.hostname}.",
            "It never contains a password and never asks for one: a message that asks for your",
            "password is not from us, whatever its sender says. Do not reply to this notice."]


# the messages


def sign_in_notice(header: NoticeHeader, event: LoginEvent, network: str) -> bytes:
    """The notice of a sign-in from a source (or network) never seen for the account."""
    lines = [f"Your mailbox {header.account} was signed in to from an address this server has not",
             "seen for it before.", "",
             f"  When:   {when_text(event.at, header.zone)}",
             f"  From:   {event.client_ip or 'unknown address'}" + (f" (network {network})" if network else ""),
             f"  How:    {how_text(event)}"]
    if client := client_text(event):
        lines.append(f"  Client: {client}")
    lines += ["", "If this was you (a new device, another network, travelling), there is nothing to do.", ""]
    lines += _advice(header)
    return _message(header, SUBJECT_SIGN_IN, lines + _closing(header))


def refused_sign_in_notice(header: NoticeHeader, event: LoginEvent) -> bytes:
    """The notice of a correct password that the login rules refused (two-factor authentication on,
    a password that must be changed or has expired): whoever tried it knows the password."""
    lines = [f"Someone signed in to your mailbox {header.account} with its correct password, and the",
             "server refused the sign-in because of your account's rules (for example, two-factor",
             "authentication is on, or the password must be changed).", "",
             f"  When:   {when_text(event.at, header.zone)}",
             f"  From:   {event.client_ip or 'unknown address'}",
             f"  How:    {how_text(event)}", "",
             "If this was you (an old device or program still using the main password), give it an",
             "app password instead. If it was not you, your password is known to someone else:",
             "change it now.", ""]
    lines += _advice(header)
    return _message(header, SUBJECT_REFUSED, lines + _closing(header))


def credential_notice(header: NoticeHeader, event: LoginEvent) -> bytes:
    """The notice of an app password created, two-factor authentication turned off or a password changed."""
    lines = [_CREDENTIAL_WHAT[event.kind].format(account=header.account), "",
             f"  When:   {when_text(event.at, header.zone)}"]
    if event.protocol == "admin":
        lines.append("  By:     an administrator of this server")
    elif event.client_ip:
        lines.append(f"  From:   {event.client_ip}")
    if event.kind == "app-password-created" and event.detail:
        lines.append(f"  Which:  {event.detail} (its name and what it may do; never the password)")
    lines += ["", "If you asked for this, there is nothing to do.", ""]
    lines += _advice(header)
    return _message(header, CREDENTIAL_SUBJECTS[event.kind], lines + _closing(header))


def digest_notice(header: NoticeHeader, digest: Digest) -> bytes:
    """The weekly digest: sign-ins by source, failed attempts, app passwords and their last use."""
    lines = [f"What happened to your mailbox {header.account}",
             f"from {when_text(digest.start, header.zone)}", f"  to {when_text(digest.end, header.zone)}:", ""]
    lines += _source_lines("Sign-ins", digest.sign_ins, "  none")
    lines += ["", *_source_lines("Failed sign-in attempts against your account", digest.failures,
                                 "  none: nobody tried a wrong password")]
    lines += ["", *_app_password_lines(digest.app_passwords)]
    lines += ["", "If you see a source or an app password you do not recognise:", ""]
    lines += _advice(header)[1:]
    lines += ["", "You get this summary because you asked for it; to stop it, ask your administrator:",
              f"      hardmail account digest {header.account} off"]
    return _message(header, SUBJECT_DIGEST, lines + _closing(header))


def _source_lines(title: str, sources: Sequence[SourceSummary], empty: str) -> list[str]:
    total = sum(s.count for s in sources)
    lines = [f"{title}: {total}"]
    for source in sources:
        times = "once" if source.count == 1 else f"{source.count} times"
        over = f" over {', '.join(p.upper() for p in source.protocols)}" if source.protocols else ""
        lines.append(f"  {source.ip or 'unknown address'}: {times}{over}, last {_short_when(source.last)}")
    return lines if sources else [*lines, empty]


def _app_password_lines(app_passwords: Sequence[AppPassword]) -> list[str]:
    lines = [f"App passwords: {len(app_passwords)}"]
    for app in app_passwords:
        if app.last_used_at is not None:
            used = f"last used {_short_when(app.last_used_at)}"
            used += f" from {app.last_used_ip}" if app.last_used_ip else ""
        else:
            used = "never used (revoke it if nothing needs it)"
        lines.append(f"  '{app.name}' ({', '.join(sorted(app.scopes))}), created "
                     f"{utc(app.created_at):%Y-%m-%d}: {used}")
    return lines if app_passwords else [*lines, "  none"]


def _message(header: NoticeHeader, subject: str, lines: list[str]) -> bytes:
    text = MIMEText("\n".join(lines) + "\n", "plain", _QP_UTF8)  # type: ignore[arg-type]
    text["From"] = f"Mail server security <{header.sender}>"
    text["To"] = f"<{header.account}>"
    text["Subject"] = subject
    text["Date"] = rfc5322_date(header.now)
    text["Message-ID"] = make_msgid(domain=header.hostname)
    text["Auto-Submitted"] = "auto-generated"  # RFC 3834 5
    ascii_only = header.account.isascii() and header.sender.isascii()
    return text.as_bytes(policy=email.policy.SMTP if ascii_only else email.policy.SMTPUTF8)  # RFC 6532
