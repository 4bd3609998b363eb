"""Verdicts: what policy code returns. A finding (why) is kept apart from the reply (what the client gets)."""

from __future__ import annotations

from dataclasses import dataclass

from hardmail.core.replies import Reply


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    reply: Reply
    reason: str  # for the log; never shown to the client

    @staticmethod
    def ok(reply: Reply, reason: str = "") -> Verdict:
        return Verdict(True, reply, reason)

    @staticmethod
    def refuse(reply: Reply, reason: str) -> Verdict:
        return Verdict(False, reply, reason)
