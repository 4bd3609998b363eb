"""Delivery status notifications (RFC 3464): "failed" bounces and "delayed" notices to the sender.

A notice is ``multipart/report; report-type=delivery-status`` (RFC 6522) with a readable text part,
a ``message/delivery-status`` part (one per-message block, one block per recipient) and the original
message (``message/rfc822``) when it is small, else only its headers (``text/rfc822-headers``). It
comes from MAILER-DAEMON and is sent with a null reverse-path (RFC 5321 4.5.5), so that a notice
about a notice is never made: :func:`should_notify` is False for a message with a null sender.

The sender's DSN request (RFC 3461) is honoured: NOTIFY per recipient (NEVER, or any of SUCCESS,
FAILURE, DELAY; without NOTIFY failures and delays are reported), RET=HDRS returns the headers only,
ENVID appears as ``Original-Envelope-Id`` and ORCPT as ``Original-Recipient`` in the report.
"""

from __future__ import annotations

import email.policy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

Action = Literal["failed", "delayed", "delivered"]
_NOTIFY_KEYWORD = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS"}
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
    original_recipient: str = ""  # RFC 3461 4.2 ORCPT, "addr-type;address"


@dataclass(frozen=True, slots=True)
class Notice:
    queue_id: str
    sender: str  # the original sender: the notice's only recipient
    arrival: float
    reporting_mta: str  # our host name
    envid: str = ""  # RFC 3461 4.4 ENVID
    ret: str = ""  # RFC 3461 4.3 RET: HDRS returns the headers only


@dataclass(frozen=True, slots=True)
class RecipientDsn:
    """What the client asked for one recipient (RFC 3461 4.1, 4.2)."""

    notify: tuple[str, ...] = ()
    orcpt: str = ""


@dataclass(frozen=True, slots=True)
class DsnRequest:
    """The client's DSN parameters for one message (RFC 3461 4); kept with the queued message."""

    ret: str = ""
    envid: str = ""
    recipients: Mapping[str, RecipientDsn] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"ret": self.ret, "envid": self.envid,
                           "rcpt": {a: [list(r.notify), r.orcpt] for a, r in self.recipients.items()}})

    @classmethod
    def from_json(cls, text: str) -> DsnRequest:
        """The request stored by :meth:`to_json`; an unreadable one is the default request."""
        try:
            data = json.loads(text)
            recipients = {str(a): RecipientDsn(tuple(map(str, n)), str(o)) for a, (n, o) in data["rcpt"].items()}
            return cls(str(data["ret"]), str(data["envid"]), recipients)
        except (ValueError, KeyError, TypeError):
            return cls()

    def for_recipient(self, address: str) -> RecipientDsn:
        return self.recipients.get(address, RecipientDsn())


def wants_notice(notify: Sequence[str], action: Action) -> bool:
    """RFC 3461 4.1: NEVER gets nothing; without NOTIFY, failures and delays are reported."""
    keywords = {n.upper() for n in notify}
    if not keywords:
        return action in ("failed", "delayed")
    return "NEVER" not in keywords and _NOTIFY_KEYWORD[action] in keywords


def xtext(text: str) -> str:
    """RFC 3461 4: "+", "=" and characters outside "!".."~" as "+XX"."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else "".join(f"+{b:02X}" for b in c.encode())
                   for c in text)


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
    if notice.envid:
        block["Original-Envelope-Id"] = notice.envid  # RFC 3464 2.2.1
    block["X-Hardmail-Queue-ID"] = notice.queue_id
    block["Arrival-Date"] = _when(notice.arrival)
    return block


def _recipient_block(report: RecipientReport) -> Message:
    # RFC 3464 2.3
    block = Message()
    if report.original_recipient:
        block["Original-Recipient"] = report.original_recipient  # RFC 3464 2.3.1
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


_INTROS = {
    "failed": "Your message could not be delivered to the recipients below; it will not be retried.\n",
    "delayed": "Your message has not been delivered yet to the recipients below; delivery is still being "
               "retried and you need not send it again.\n",
    "delivered": "Your message was delivered to the recipients below.\n",
}
_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
}


def _human_text(notice: Notice, reports: Sequence[RecipientReport]) -> str:
    intro = f"This is the mail system at {notice.reporting_mta}.\n\n" + _INTROS[reports[0].action]
    lines = [f"<{r.address}>: {r.diagnostic or r.status}" for r in reports]
    return intro + "\n" + "\n".join(lines) + "\n"


def _original_part(original: bytes, full_limit: int, ret: str = "") -> Message:
    if ret.upper() != "HDRS" and len(original) <= full_limit:
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
    report["Subject"] = _SUBJECTS[reports[0].action]
    report["Date"] = _when(now)
    report["Message-ID"] = make_msgid(domain=notice.reporting_mta)
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 5
    report.attach(MIMEText(_human_text(notice, reports), "plain", _QP_UTF8))  # type: ignore[arg-type]
    status = MIMEBase("message", "delivery-status")
    status.set_payload([_per_message_block(notice), *(_recipient_block(r) for r in reports)])
    report.attach(status)
    report.attach(_original_part(original, full_limit, notice.ret))
    policy = email.policy.SMTP if notice.sender.isascii() else email.policy.SMTPUTF8  # RFC 6532
    return report.as_bytes(policy=policy)
