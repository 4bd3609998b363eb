"""SMTP replies: a reply code, an enhanced status code and text, rendered to wire bytes.

RFC 5321 4.2 defines the reply format; RFC 3463 / RFC 2034 the enhanced status codes.
Named replies used across the server live here so that the same situation always gets the
same code and text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. ``text`` may hold several lines (multi-line reply, RFC 5321 4.2.1)."""

    code: int
    enhanced: str | None
    text: str | tuple[str, ...]

    @property
    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def to_bytes(self, enhanced_codes: bool = True) -> bytes:
        """Render as CRLF-terminated lines; the enhanced code prefixes every line (RFC 2034 4)."""
        prefix = f"{self.enhanced} " if (enhanced_codes and self.enhanced) else ""
        lines = self.lines or ("",)
        out = []
        for index, line in enumerate(lines):
            sep = " " if index == len(lines) - 1 else "-"
            out.append(f"{self.code}{sep}{prefix}{line}\r\n")
        return "".join(out).encode("utf-8", "replace")

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def log_text(self) -> str:
        return f"{self.code} {self.enhanced or ''} {' / '.join(self.lines)}".replace("  ", " ")


# Connection-level
SERVICE_CLOSING = Reply(221, "2.0.0", "Bye")
SERVICE_UNAVAILABLE = Reply(421, "4.3.2", "Service not available, closing transmission channel")
TIMEOUT = Reply(421, "4.4.2", "Idle timeout, closing connection")
SESSION_TIME_LIMIT = Reply(421, "4.4.2", "Session time limit reached, closing connection")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands in one session, closing connection")
SHUTTING_DOWN = Reply(421, "4.3.2", "Server shutting down, try again later")

# Generic
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
RESET_OK = Reply(250, "2.0.0", "Reset OK")
NOOP_OK = Reply(250, "2.0.0", "OK")
VRFY_CANNOT = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
START_DATA = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
READY_TLS = Reply(220, "2.0.0", "Ready to start TLS")
HELP = Reply(214, "2.0.0", ("Commands supported:",
                            "HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
                            "See RFC 5321"))

# Syntax and sequence
LINE_TOO_LONG = Reply(500, "5.5.6", "Line too long (RFC 5321 4.5.3.1)")
UNKNOWN_COMMAND = Reply(500, "5.5.2", "Command not recognized")
SYNTAX_ERROR = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
PARAM_NOT_IMPLEMENTED = Reply(555, "5.5.4", "MAIL FROM/RCPT TO parameter not recognized or not implemented")
NEED_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = Reply(503, "5.5.1", "Send MAIL FROM first")
NEED_RCPT = Reply(503, "5.5.1", "Send RCPT TO first (no valid recipients)")
NESTED_MAIL = Reply(503, "5.5.1", "Sender already specified; send RSET to start over")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients for this message")
BARE_LINEFEED = Reply(
    554, "5.6.11",
    "Message refused: bare CR or LF in data (RFC 5321 2.3.8); use CRLF line endings",
)
# RFC 5321 4.5.3.1.6 (text line limit), 4.3.2 (554 after the data); RFC 3463 3.7 (X.6.0: media error)
TEXT_LINE_TOO_LONG = Reply(
    554, "5.6.0",
    "Message refused: a text line is longer than 1000 octets including CRLF (RFC 5321 4.5.3.1.6); "
    "wrap lines at 998 characters or use quoted-printable/base64",
)


def text_line_too_long(limit: int) -> Reply:
    """TEXT_LINE_TOO_LONG for a configured limit of ``limit`` octets including CRLF."""
    if limit == 1000:
        return TEXT_LINE_TOO_LONG
    return TEXT_LINE_TOO_LONG.with_text(
        f"Message refused: a text line is longer than {limit} octets including CRLF (RFC 5321 4.5.3.1.6); "
        f"wrap lines at {limit - 2} characters or use quoted-printable/base64")


BAD_8BIT_HEADER = Reply(554, "5.6.7", "Non-ASCII in message without SMTPUTF8/8BITMIME")

# TLS
TLS_ALREADY = Reply(503, "5.5.1", "TLS already active")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")
TLS_REQUIRED = Reply(530, "5.7.0", "Must issue a STARTTLS command first")

# AUTH (RFC 4954)
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_ENCRYPTION_REQUIRED = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated")
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Cannot decode base64 response")
AUTH_MECH_UNKNOWN = Reply(504, "5.5.4", "Unrecognized authentication mechanism")
AUTH_NOT_AVAILABLE = Reply(502, "5.5.1", "Authentication not available on this port")
AUTH_TEMP_FAILURE = Reply(454, "4.7.0", "Temporary authentication failure, try again later")
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction")

# Envelope and message policy
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied: recipient is not local; authenticate first")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
UNKNOWN_RECIPIENT = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, message not accepted; try again later")
# RFC 5321 4.5.3.1.10, RFC 3463 3.4 (X.3.1: mail system full)
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage, try again later")
DISK_FULL = Reply(452, "4.3.1", "Insufficient system storage: the mail disk is full, message not accepted; "
                                "try again later")
HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header section too large")  # RFC 3463 3.4 (X.3.4: too big)
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
SMTPUTF8_REQUIRED = Reply(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter")
