"""Trace and missing headers: the Received line we add, Date/Message-ID for submissions, From:.

``received_header`` builds the RFC 5321 4.4 time-stamp line, folded below 78 characters per line
(RFC 5322 2.1.1) with CRLF + TAB. Every value that came from the client (HELO text, names,
addresses) is sanitised first, so it cannot end the header, open a comment or forge a clause.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from hardmail.mime.headers import HeaderBlock, parse_header_block, split_block

MAX_LINE = 77  # RFC 5322 2.1.1: lines SHOULD be no more than 78 characters; we stay below
MAX_HELO = 64
MAX_NAME = 255  # RFC 1035 2.3.4 limits a domain name to 255 octets
MAX_ADDRESS = 256  # RFC 5321 4.5.3.1.3
MAX_TOKEN = 64

_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_/+=]")
_ADDRESS_UNSAFE = re.compile(r"[\x00-\x20\x7f()<>\\;\"]")  # controls, space, comment/angle/quote


def with_protocol(esmtp: bool, tls: bool, auth: bool, utf8: bool) -> str:
    """The ``with`` keyword of the Received line (RFC 3848 2, RFC 6531 4.3).

    TLS, AUTH and SMTPUTF8 all need EHLO, so a HELO session is plain ``SMTP``.
    """
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if utf8 else "ESMTP"
    suffix = ("S" if tls else "") + ("A" if auth else "")
    return base + suffix


def _sanitize(text: str, unsafe: re.Pattern[str], limit: int) -> str:
    return unsafe.sub("_", text)[:limit]


def sanitize_helo(helo: str) -> str:
    """HELO text made safe for the ``from`` clause: host name or address-literal characters only."""
    return _sanitize(helo, _HELO_UNSAFE, MAX_HELO) or "unknown"


def sanitize_address(address: str) -> str:
    """An address made safe inside a comment or angle brackets (UTF-8 kept for SMTPUTF8)."""
    return _sanitize(address, _ADDRESS_UNSAFE, MAX_ADDRESS)


def address_literal(ip: str) -> str:
    """``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 4.1.3)."""
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return f"[{_sanitize(ip, _HELO_UNSAFE, MAX_TOKEN)}]"
    if parsed.version == 6:
        return f"[IPv6:{parsed.compressed}]"
    return f"[{parsed}]"


def _from_clause(helo: str, peer_ip: str, peer_name: str | None) -> list[str]:
    # RFC 5321 4.4: From-domain = "FROM" FWS Extended-Domain, TCP-info in a comment
    name = _sanitize(peer_name, _HELO_UNSAFE, MAX_NAME) if peer_name else "unknown"
    return ["from", sanitize_helo(helo), f"({name}", f"{address_literal(peer_ip)})"]


def _tls_clause(tls: Mapping[str, str]) -> list[str]:
    version = _sanitize(tls.get("version", "TLS"), _TOKEN_UNSAFE, MAX_TOKEN)
    cipher = _sanitize(tls.get("cipher", "unknown"), _TOKEN_UNSAFE, MAX_TOKEN)
    bits = _sanitize(tls.get("bits", "0"), _TOKEN_UNSAFE, 8)
    return ["(using", version, "with", "cipher", cipher, f"({bits}/{bits}", "bits))"]


def _by_clause(hostname: str, protocol: str, queue_id: str) -> list[str]:
    # RFC 5321 4.4: By-domain, With = "WITH" FWS Protocol, ID = "ID" FWS Atom
    host = _sanitize(hostname, _HELO_UNSAFE, MAX_NAME)
    return ["by", host, "(hardmail)", "with", _sanitize(protocol, _TOKEN_UNSAFE, MAX_TOKEN),
            "id", _sanitize(queue_id, _TOKEN_UNSAFE, MAX_TOKEN)]


def received_header(
    *,
    helo: str,
    peer_ip: str,
    peer_name: str | None,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipient: str | None,
    tls: Mapping[str, str] | None,
    authenticated: str | None,
    when: float,
) -> bytes:
    """The ``Received:`` header line (RFC 5321 4.4) as CRLF-terminated, folded bytes."""
    clauses = [_from_clause(helo, peer_ip, peer_name)]
    if tls:
        clauses.append(_tls_clause(tls))
    if authenticated:
        clauses.append(["(Authenticated", "sender:", f"{sanitize_address(authenticated)})"])
    clauses.append(_by_clause(hostname, protocol, queue_id))
    if recipient:
        clauses.append(["for", f"<{sanitize_address(recipient)}>"])
    clauses[-1][-1] += ";"
    clauses.append([rfc5322_date(when)])  # RFC 5322 3.3 date-time, kept on one line
    return fold_header("Received:", clauses)


def rfc5322_date(when: float) -> str:
    """``Sun, 29 Nov 2026 15:00:00 +0000`` (RFC 5322 3.3), in UTC."""
    return email.utils.format_datetime(datetime.fromtimestamp(when, UTC))


def fold_header(name: str, clauses: list[list[str]]) -> bytes:
    """Join clauses (lists of unbreakable words) into folded lines (RFC 5322 2.2.3).

    A clause stays on one line when it fits; a longer clause is wrapped between its words. A single
    word longer than a line (only a pathological host name) is kept whole on its own line.
    """
    lines = [name]
    for clause in clauses:
        text = " ".join(clause)
        if len(lines[-1]) + 1 + len(text) <= MAX_LINE:
            lines[-1] += " " + text
            continue
        if 1 + len(text) <= MAX_LINE:
            lines.append("\t" + text)
            continue
        for word in clause:
            if len(lines[-1]) + 1 + len(word) <= MAX_LINE:
                lines[-1] += " " + word
            else:
                lines.append("\t" + word)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def missing_submission_headers(header_block: bytes, *, hostname: str, when: float) -> bytes:
    """``Message-ID:`` and/or ``Date:`` lines to prepend when a submitted message lacks them.

    RFC 6409 8.2 and 8.3: a submission server may add a missing Date and Message-ID.
    """
    present = parse_header_block(header_block).names()
    lines = b""
    if "message-id" not in present:
        domain = _sanitize(hostname, _HELO_UNSAFE, MAX_NAME)
        lines += f"Message-ID: {email.utils.make_msgid(domain=domain)}\r\n".encode("ascii")
    if "date" not in present:
        lines += f"Date: {rfc5322_date(when)}\r\n".encode("ascii")
    return lines


split_header_block = split_block  # the name delivery.pipeline uses

MAX_RECEIVED = 100  # RFC 5321 6.3: a hop count of 100 is a reasonable loop threshold


def received_count(head: bytes | HeaderBlock) -> int:
    """How many ``Received:`` fields the header block holds (RFC 5321 6.3 loop detection)."""
    block = head if isinstance(head, HeaderBlock) else parse_header_block(head)
    return len(block.named("received"))


def too_many_hops(head: bytes | HeaderBlock) -> bool:
    return received_count(head) > MAX_RECEIVED
