"""Session hooks: where access control, rate limits, message authentication and spam checks plug
into an SMTP session without the session knowing them.

Each hook method returns ``None`` to let the session go on, or a Reply that refuses (at connect
the reply is the greeting and closes the session). ``on_message`` may also add header lines, pick
a folder and change the body (``MessageDecision.content``). Hooks run in the order they are listed
in ``ServerContext.hooks``; the first refusal wins. The decisions themselves live in policy/ and
msgauth/ as pure functions; hooks gather facts (look-ups, counters) and call them.

IMAP and POP3 sessions call ``on_connect`` and ``on_disconnect`` too, and the login hooks through
:class:`hardmail.server.login.LoginDriver`; the other methods are SMTP's. A refusal is an SMTP
Reply whatever the protocol: the login driver maps it to a login result, a session of another
protocol answers a refused connection in its own words. ``SessionFacts.listener`` says which kind
the session is; checks meant for the MX port look for ``"smtp"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.core.address import Address
from hardmail.core.replies import Reply
from hardmail.delivery.content import MessageContent
from hardmail.delivery.recipients import Resolution
from hardmail.proto.smtp.events import MailParams


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What a hook may know about the session at the moment it is called."""

    session_id: str
    listener: str  # the listener kind: "smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s"
    peer_ip: str
    peer_port: int
    helo: str | None
    tls: dict[str, str] | None
    account: str | None  # authenticated account address


@dataclass(frozen=True, slots=True)
class MessageDecision:
    reply: Reply | None = None  # a refusal; None accepts
    headers: bytes = b""  # CRLF-terminated header lines to prepend (Authentication-Results, ...)
    folder: str | None = None  # deliver local copies into this folder (e.g. "Junk") instead of INBOX
    # Header fields to remove: 0-based positions in ``hardmail.mime.headers.parse_header_block``'s
    # numbering (``HeaderBlock.fields``) of the header block in ``MessageFacts.chunks``
    drop_headers: tuple[int, ...] = ()
    # The message with its body changed (a warning line at the top of its text) for the local
    # copies only; its head is not used: the fields are added and dropped as above. The first hook
    # that gives one wins. Queued (remote) copies keep the body as received.
    content: MessageContent | None = None
    local_headers: bytes = b""  # like ``headers``, for the local copies only (a warning to our users)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    sender: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    mailboxes: tuple[str, ...]  # local accounts
    remote: tuple[str, ...]
    # The message as received (submission headers already added): its head (the header block) in
    # memory, the rest in its incoming file. A check that needs every byte calls content.read() in
    # a worker thread (msgauth.workers), never on the event loop.
    content: MessageContent
    size: int

    @property
    def head(self) -> bytes:
        """The header block, with the empty line that ends it (at most [smtp] max_header_size)."""
        return self.content.head


class SessionHook:
    """Base class with do-nothing defaults; a hook overrides what it needs."""

    async def on_connect(self, facts: SessionFacts) -> Reply | None:
        return None

    async def on_helo(self, facts: SessionFacts, hostname: str) -> Reply | None:
        return None

    async def before_auth(self, facts: SessionFacts, mechanism: str) -> Reply | None:
        """Before any password work: a banned source is refused here, cheaply."""
        return None

    async def after_auth(self, facts: SessionFacts, username: str, success: bool, reason: str) -> Reply | None:
        """After the verdict; may wait (tarpit) or replace the reply (e.g. ban now)."""
        return None

    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        return None

    async def on_rcpt(self, facts: SessionFacts, sender: str, recipient: Address,
                      resolution: Resolution) -> Reply | None:
        return None

    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        return None

    async def on_disconnect(self, facts: SessionFacts) -> None:
        return None
