"""Errors that carry a client text, an internal cause and a temporary flag.

One function, :func:`reply_for_error`, maps any exception met while handling a command to the SMTP
reply the client gets. Internal causes go to the log only; the client never sees them.
"""

from __future__ import annotations

from hardmail.core.replies import LOCAL_ERROR, Reply


class MailError(Exception):
    """An error with a safe client-facing text and an internal cause for the log."""

    def __init__(
        self,
        client_text: str,
        *,
        cause: str = "",
        temporary: bool = True,
        enhanced: str | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(client_text)
        self.client_text = client_text
        self.cause = cause
        self.temporary = temporary
        self.enhanced = enhanced or ("4.3.0" if temporary else "5.3.0")
        self.code = code or (451 if temporary else 554)

    def reply(self) -> Reply:
        return Reply(self.code, self.enhanced, self.client_text)


def reply_for_error(error: BaseException) -> Reply:
    """The reply a client gets for ``error``; unknown errors are temporary local errors."""
    if isinstance(error, MailError):
        return error.reply()
    return LOCAL_ERROR
