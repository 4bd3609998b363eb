"""The spam verdict of a whole message: the session's findings plus the authentication results,
turned into an action and the header changes it asks for (X-Spam-*, a tagged Subject, Junk).

Incoming X-Spam-* fields are removed from every message by the session, whether or not scoring is
on (:func:`hardmail.msgauth.authres.verdict_fields`): a sender's ``X-Spam-Status: No`` must not
reach filters that trust it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hardmail.config.schema import AntispamSection
from hardmail.mime.headers import HEAD_LIMIT, parse_header_block
from hardmail.msgauth.authres import Findings
from hardmail.policy import spam


@dataclass(frozen=True, slots=True)
class MessageVerdict:
    action: spam.Action
    score: int
    headers: bytes = b""
    folder: str | None = None
    drop_headers: tuple[int, ...] = ()


def weights_of(section: AntispamSection) -> spam.SpamWeights:
    return spam.SpamWeights(
        helo_syntax=section.score_helo_syntax, helo_unresolvable=section.score_helo_unresolvable,
        helo_ours=section.score_helo_ours, no_fcrdns=section.score_no_fcrdns,
        sender_domain_no_mx=section.score_sender_no_mx, spf_fail=section.score_spf_fail,
        spf_softfail=section.score_spf_softfail, dkim_fail=section.score_dkim_fail,
        dmarc_fail=section.score_dmarc_fail,
    )


def _dkim_and_dmarc(findings: Findings, weights: spam.SpamWeights) -> list[spam.Finding]:
    """DKIM and DMARC findings (SPF was scored at MAIL FROM)."""
    dmarc_word = findings.dmarc.result if findings.dmarc else None
    return spam.auth_findings(None, [d.result for d in findings.dkim], dmarc_word, weights)


def tagged_subject(message: bytes, tag: str) -> tuple[bytes, tuple[int, ...]]:
    """A new Subject field with ``tag`` in front, and the positions of the old ones to drop.

    Every Subject field is dropped (a second, untagged one could be the one a reader shows); the
    first one's text is kept, and ``tag`` is not put in front twice.
    """
    block = parse_header_block(message[:HEAD_LIMIT])
    subjects = block.positions("subject")
    tag_bytes = tag.encode("utf-8")
    if not subjects:
        return b"Subject: " + tag_bytes + b"\r\n", ()
    first = block.fields[subjects[0]]
    value = block.data[first.colon + 1:first.end].strip()
    if not value.startswith(tag_bytes):
        value = tag_bytes + b" " + value
    return b"Subject: " + value + b"\r\n", subjects


def message_verdict(section: AntispamSection, weights: spam.SpamWeights, session_findings: Sequence[spam.Finding],
                    findings: Findings, message: bytes) -> MessageVerdict:
    """The action, our X-Spam-* fields and the header changes for one message from the MX listener."""
    if not section.enabled:
        return MessageVerdict("accept", 0)
    every = [*session_findings, *_dkim_and_dmarc(findings, weights)]
    score = spam.total(every)
    action = spam.action(score, section.mark_threshold, section.reject_threshold)
    headers = spam.status_headers(score, action, every, section.mark_threshold)
    if action != "mark":
        return MessageVerdict(action, score, headers)
    drop: tuple[int, ...] = ()
    if section.subject_tag:
        subject, drop = tagged_subject(message, section.subject_tag)
        headers += subject
    return MessageVerdict(action, score, headers, "Junk" if section.junk_marked else None, drop)
