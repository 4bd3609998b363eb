"""The trace fields we write: ``Authentication-Results`` (RFC 8601) and ``Received-SPF`` (RFC 7208 9.1),
and finding the incoming fields that claim to be verdicts of ours (RFC 8601 5), which the SMTP
session removes from every message on every listener."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from hardmail.mime.headers import HeaderBlock, HeaderField
from hardmail.msgauth.arc import ArcResult
from hardmail.msgauth.dkim import DkimVerification
from hardmail.msgauth.dmarc import DmarcResult
from hardmail.msgauth.spf import SpfResult

_UNSAFE = re.compile(r"[^\x21-\x7e]|[;()\"\\]")
_TOKEN = re.compile(r'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+')  # RFC 2045 5.1 token
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')  # RFC 5322 3.2.4 quoted-string


@dataclass(frozen=True, slots=True)
class Findings:
    """Everything the inbound checks found about one message."""

    spf_helo: SpfResult | None
    spf_mailfrom: SpfResult | None
    dkim: tuple[DkimVerification, ...]
    arc: ArcResult | None
    dmarc: DmarcResult | None


def _value(text: str) -> str:
    """A property value: a token, or a quoted string when it is not one (RFC 8601 2.2)."""
    if text and not _UNSAFE.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment(text: str) -> str:
    return "(" + re.sub(r"[()\\\r\n]", " ", text)[:120] + ")" if text else ""


def _spf_clause(result: SpfResult, sender: str, helo: str) -> str:
    # RFC 8601 2.7.2: smtp.mailfrom for the MAIL FROM identity, smtp.helo for HELO
    prop = f"smtp.mailfrom={_value(sender)}" if result.identity == "mailfrom" else f"smtp.helo={_value(helo)}"
    return f"spf={result.result} {prop}"


def _dkim_clause(result: DkimVerification) -> str:
    properties = (("header.d", result.domain), ("header.s", result.selector), ("header.a", result.algorithm),
                  ("header.b", result.header_b))  # header.b: RFC 6008
    parts = [f"dkim={result.result}", _comment(result.reason),
             *(f"{name}={_value(value)}" for name, value in properties if value)]
    return " ".join(p for p in parts if p)


def _dmarc_clause(result: DmarcResult) -> str:
    comment = _comment(f"p={result.policy} d={result.record_domain}" if result.record_domain else result.reason)
    return f"dmarc={result.result} {comment} header.from={_value(result.from_domain)}"


def authentication_results(authserv_id: str, findings: Findings, sender: str, helo: str) -> bytes:
    """One ``Authentication-Results:`` field with every method's result, folded, CRLF-terminated."""
    clauses = []
    for spf in (findings.spf_helo, findings.spf_mailfrom):
        if spf is not None:
            clauses.append(_spf_clause(spf, sender, helo))
    clauses.extend(_dkim_clause(r) for r in findings.dkim)
    if not findings.dkim:
        clauses.append("dkim=none")
    if findings.dmarc is not None:
        clauses.append(_dmarc_clause(findings.dmarc))
    if findings.arc is not None:
        clauses.append(f"arc={findings.arc.result}")
    body = ";\r\n\t".join([authserv_id, *clauses])
    return f"Authentication-Results: {body}\r\n".encode()


def received_spf(result: SpfResult, receiver: str, client_ip: str, sender: str, helo: str) -> bytes:
    """RFC 7208 9.1: the ``Received-SPF:`` field for the identity that decided."""
    comment = _comment(f"{receiver}: {result.explanation or result.result} for {result.domain or helo}")
    pairs = [f"client-ip={client_ip}", f"envelope-from={_value(sender)}", f"helo={_value(helo)}",
             f"identity={result.identity}", f"receiver={_value(receiver)}"]
    if result.mechanism:
        pairs.append(f"mechanism={_value(result.mechanism)}")
    return f"Received-SPF: {result.result} {comment}\r\n\t{'; '.join(pairs)};\r\n".encode()


def _skip_cfws(text: str, at: int) -> int:
    """The position after folding white space and (nested) comments starting at ``at`` (RFC 5322 3.2.2)."""
    depth = 0
    while at < len(text):
        char = text[at]
        if char == "\\" and depth:
            at += 1
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in " \t\r\n":
            break
        at += 1
    return at


def _authserv_id(value: str) -> str:
    """RFC 8601 2.2: the authserv-id, a token or a quoted-string after optional CFWS, lower-cased,
    a trailing dot removed. What follows it (a version, then ";") does not matter: the id alone
    says who claims to have written the field."""
    start = _skip_cfws(value, 0)
    quoted = _QUOTED.match(value, start)
    if quoted is not None:
        return re.sub(r"\\(.)", r"\1", quoted.group(1)).strip().lower().rstrip(".")
    token = _TOKEN.match(value, start)
    return token.group(0).lower().rstrip(".") if token is not None else ""


# Fields that only hardmail writes as verdicts, removed from every incoming message whoever sent
# it: Received-SPF (RFC 7208 9.1; it names no author, so no incoming one can be trusted), the
# SpamAssassin-style X-Spam-* fields of the spam verdict, and X-Hardmail-* fields.
VERDICT_FIELDS = ("received-spf",)
VERDICT_PREFIXES = ("x-spam-", "x-hardmail-")
_CLAIMING = ("authentication-results", "arc-authentication-results")


def _claims(block: HeaderBlock, field: HeaderField, names: set[str]) -> bool:
    """Whether an (ARC-)Authentication-Results field claims one of ``names`` (RFC 8601 5, RFC 8617)."""
    value = block.value(field)
    if field.name == "arc-authentication-results":  # RFC 8617 4.1.1: "i=N;" then the A-R value;
        # read both ways (with or without the instance tag, comments anywhere around it)
        return _authserv_id(value) in names or _authserv_id(value.partition(";")[2]) in names
    return _authserv_id(value) in names


def verdict_fields(block: HeaderBlock, our_names: Sequence[str]) -> tuple[int, ...]:
    """Positions of the fields that claim to be verdicts of ours: (ARC-)Authentication-Results with
    one of ``our_names`` as authserv-id (case-insensitive, trailing dot ignored), and every
    :data:`VERDICT_FIELDS` and :data:`VERDICT_PREFIXES` field."""
    names = {n.lower().rstrip(".") for n in our_names if n}
    return tuple(i for i, field in enumerate(block.fields)
                 if field.name in VERDICT_FIELDS or field.name.startswith(VERDICT_PREFIXES)
                 or (field.name in _CLAIMING and _claims(block, field, names)))
