"""The mailbox quota check of SMTP sessions: a full mailbox refuses at RCPT, counting MAIL FROM's
SIZE= (RFC 1870 4), and at the end of DATA once the real size is known.

The decision is :func:`hardmail.policy.quota.quota_verdict`; the reply is ``452 4.2.2`` or, with
``[mailbox] over_quota = "bounce"``, ``552 5.2.2``. A recipient that expands (an alias) to several
local mailboxes is refused only when every one of them is full and it has no remote target; the
others still get the message (what the full ones get then is decided at delivery, see
:meth:`hardmail.delivery.pipeline.MessageAcceptor.accept`). At the end of DATA the message is
refused when every local mailbox of the transaction is full and no remote recipient is left.
The usage look-up failing (a database hiccup) lets the mail through, logged: a quota protects the
disk, and refusing mail for a look-up error would lose more than it saves.
"""

from __future__ import annotations

from collections.abc import Sequence

from hardmail.config.schema import MailboxSection
from hardmail.core.address import Address
from hardmail.core.replies import Reply
from hardmail.delivery.local_index import DeliveryIndexer
from hardmail.delivery.recipients import Resolution
from hardmail.ops.log import log_event
from hardmail.policy.quota import quota_verdict
from hardmail.proto.smtp.events import MailParams
from hardmail.server.hooks import MessageDecision, MessageFacts, SessionFacts, SessionHook


class QuotaHook(SessionHook):
    def __init__(self, indexer: DeliveryIndexer, section: MailboxSection) -> None:
        self.indexer = indexer
        self.section = section
        self._declared: dict[str, int] = {}  # session id -> SIZE= of its current MAIL FROM

    async def on_mail(self, facts: SessionFacts, sender: Address | None, params: MailParams) -> Reply | None:
        if params.size:
            self._declared[facts.session_id] = params.size
        else:
            self._declared.pop(facts.session_id, None)
        return None

    async def on_rcpt(self, facts: SessionFacts, sender: str, recipient: Address,
                      resolution: Resolution) -> Reply | None:
        if not resolution.mailboxes or resolution.remote:
            return None
        return await self._all_full(resolution.mailboxes, self._declared.get(facts.session_id, 0), "rcpt")

    async def on_message(self, facts: SessionFacts, message: MessageFacts) -> MessageDecision | None:
        if not message.mailboxes or message.remote:
            return None
        reply = await self._all_full(message.mailboxes, message.size, "data")
        return None if reply is None else MessageDecision(reply=reply)

    async def on_disconnect(self, facts: SessionFacts) -> None:
        self._declared.pop(facts.session_id, None)

    async def _all_full(self, accounts: Sequence[str], size: int, stage: str) -> Reply | None:
        """The refusal when no account of ``accounts`` has room for ``size`` bytes, else None."""
        refusal: Reply | None = None
        for account in accounts:
            try:
                usage = await self.indexer.quota(account)
            except Exception as exc:
                log_event("mailbox.quota_unknown", level="warning", account=account, stage=stage,
                          error=type(exc).__name__, detail=str(exc)[:200])
                return None
            verdict = quota_verdict(usage, size, self.section.over_quota)
            if verdict.accept:
                return None
            log_event("mailbox.over_quota", account=account, stage=stage, size=size, reason=verdict.reason,
                      code=verdict.reply.enhanced)
            refusal = verdict.reply
        return refusal
