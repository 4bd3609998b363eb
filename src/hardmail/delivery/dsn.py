"""Delivery status notifications (RFC 3464): "failed" bounces and "delayed" notices to the sender.

A notice is ``multipart/report; report-type=delivery-status`` (RFC 6522) with a readable text part,
a ``message/delivery-status`` part (one per-message block, one block per recipient) and the original
message (``message/rfc822``) when it is small, else only its headers (``text/rfc822-headers``). It
comes from MAILER-DAEMON and is sent with a null reverse-path (RFC 5321 4.5.5), so that a notice
about a notice is never made: :func:`should_notify` is False for a message with a null sender.
"""

from __future__ import annotations

import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.charset import QP, Charset
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from typing import Literal

Action = Literal["failed", "delayed"]
_QP_UTF8 = Charset("utf-8")
_QP_UTF8.body_encoding = QP  # readable in a mail client's source view
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class RecipientReport:
    address: str
    action: Action
    status: str  # RFC 3463 enhanced code, e.g. 5.1.1
    diagnostic: str = ""  # the remote reply, e.g. "550 5.1.1 no such user"
    remote_mta: str = ""
    last_attempt: float | None = None
    retry_until: float | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    queue_id: str
    sender: str  # the original sender: the notice's only recipient
    arrival: float
    reporting_mta: str  # our host name


def should_notify(sender: str) -> bool:
    """Never a notice for a notice: a null reverse-path gets none (RFC 3464 2, RFC 5321 4.5.5)."""
    return bool(sender) and sender.lower().split("@")[0] != "mailer-daemon"


def status_from_reply(code: int | None, text: str, default: str) -> str:
    """The enhanced status code at the start of the reply text (RFC 3463), else one from the basic code."""
    found = _ENHANCED.match(text.strip())
    if found and (code is None or str(code)[0] == found.group(1)):
        return found.group(0)
    if code is not None and str(code)[0] in "45" and default[0] != str(code)[0]:
        return f"{str(code)[0]}.0.0"
    return default


def final_recipient(address: str) -> str:
    """``rfc822; addr``, or for a non-ASCII address ``utf-8; addr`` with ``\\x{HEX}`` escapes (RFC 6533 3)."""
    if address.isascii():
        return f"rfc822; {address}"
    return "utf-8; " + "".join(c if c.isascii() else f"\\x{{{ord(c):X}}}" for c in address)


def _when(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC))


def _per_message_block(notice: Notice) -> Message:
    # RFC 3464 2.2
    block = Message()
    block["Reporting-MTA"] = f"dns; {notice.reporting_mta}"
    block["X-Hardmail-Queue-ID"] = notice.queue_id
    block["Arrival-Date"] = _when(notice.arrival)
    return block


def _recipient_block(report: RecipientReport) -> Message:
    # RFC 3464 2.3
    block = Message()
    block["Final-Recipient"] = final_recipient(report.address)
    block["Action"] = report.action
    block["Status"] = report.status
    if report.remote_mta:
        block["Remote-MTA"] = f"dns; {report.remote_mta}"
    if report.diagnostic:
        block["Diagnostic-Code"] = f"smtp; {' '.join(report.diagnostic.split())[:900]}"
    if report.last_attempt is not None:
        block["Last-Attempt-Date"] = _when(report.last_attempt)
    if report.retry_until is not None:
        block["Will-Retry-Until"] = _when(report.retry_until)
    return block


def _human_text(notice: Notice, reports: Sequence[RecipientReport]) -> str:
    failed = reports[0].action == "failed"
    intro = (f"This is the mail system at {notice.reporting_mta}.\n\n"
             + ("Your message could not be delivered to the recipients below; it will not be retried.\n"
                if failed else
                "Your message has not been delivered yet to the recipients below; delivery is still being "
                "retried and you need not send it again.\n"))
    lines = [f"<{r.address}>: {r.diagnostic or r.status}" for r in reports]
    return intro + "\n" + "\n".join(lines) + "\n"


def _original_part(original: bytes, full_limit: int) -> Message:
    if len(original) <= full_limit:
        return MIMEMessage(message_from_bytes(original, policy=email.policy.compat32))
    head = _HEADER_END.split(original, 1)[0].decode("utf-8", "replace").replace("\r\n", "\n")
    return MIMEText(head + "\n", "rfc822-headers", _QP_UTF8)  # type: ignore[arg-type]


def build_notice(notice: Notice, reports: Sequence[RecipientReport], original: bytes, *,
                 full_limit: int = 65536, now: float) -> bytes:
    """The complete notice message, CRLF line endings, ready for the queue or a mailbox."""
    if not reports:
        raise ValueError("a delivery status notification needs at least one recipient report")
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{notice.reporting_mta}>"
    report["To"] = f"<{notice.sender}>"
    report["Subject"] = ("Undelivered Mail Returned to Sender" if reports[0].action == "failed"
                         else "Delayed Mail (still being retried)")
    report["Date"] = _when(now)
    report["Message-ID"] = make_msgid(domain=notice.reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 5
    report.attach(MIMEText(_human_text(notice, reports), "plain", _QP_UTF8))  # type: ignore[arg-type]
    status = MIMEBase("message", "delivery-status")
    status.set_payload([_per_message_block(notice), *(_recipient_block(r) for r in reports)])
    report.attach(status)
    report.attach(_original_part(original, full_limit))
    policy = email.policy.SMTP if notice.sender.isascii() else email.policy.SMTPUTF8  # RFC 6532
    return report.as_bytes(policy=policy)
