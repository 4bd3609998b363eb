"""Addresses in the originator fields of a header block (RFC 5322 3.4, 3.6.2): the author domain
for DMARC (RFC 7489 6.6.1) and the addresses a submitted message claims to come from.

Address lists are read by the stdlib's RFC 5322 parser (``email._header_value_parser``, the one
behind ``email.headerregistry``) and, as a second opinion, by ``email.utils.getaddresses``: every
address either finds counts, so that a value read one way by us and another way by a mail reader
cannot slip through. Display names are never turned into ``Address`` objects, so an encoded word
that decodes to CR/LF (``=?utf-8?q?Bob=0D=0AX?=``) is harmless display text, not an error (RFC
2047 6.2: decoding is for display). Both stdlib parsers are quadratic (and recursive) on hostile
input, so a value longer than MAX_ADDRESS_FIELD or with more than MAX_SPECIALS quoting characters
is not parsed but refused, and callers run these functions in a worker thread.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from email import _header_value_parser as rfc5322_parser
from email.errors import InvalidHeaderDefect
from typing import Any

from hardmail.core.address import AddressError, normalize_domain
from hardmail.mime.headers import HeaderBlock, parse_header_block

# Longer values are refused unparsed (see module docstring). Not RFC 5322 2.1.1's 998: that bounds
# a line, and a From: folded over several lines (a long encoded display name) may be longer.
MAX_ADDRESS_FIELD = 4096
# The stdlib parsers' cost grows with the square of the quoted strings, escapes, comments and
# groups in a value (16 KiB of '"' took 2.5 s); with at most this many of those characters, a
# MAX_ADDRESS_FIELD value is parsed in about 0.1 s. An ordinary address list has a few.
MAX_SPECIALS = 64
_SPECIALS = re.compile(r'["\\(:]')
MAX_AUTHOR_DOMAINS = 8  # more distinct domains in From: than this is refused, not looked up
ORIGINATOR_FIELDS = ("from", "sender", "resent-from", "resent-sender")
MAX_ORIGINATOR_FIELDS = 8
# anything after an "@" up to a delimiter: the domains a From: value names, however broken it is
_LENIENT_DOMAIN = re.compile(r"@[ \t]*([^\s@<>()\[\]\\,;:\"']+)")


@dataclass(frozen=True, slots=True)
class ParsedAddresses:
    addresses: tuple[str, ...]  # ``local@domain`` (domain normalised), in order, each once
    problem: str = ""  # why the value is not a clean address list, or ""


def _normalised(local: str, domain: str) -> str:
    try:
        return f"{local}@{normalize_domain(domain)}"
    except AddressError:
        return f"{local}@{domain.lower()}"


def _strict(value: str) -> tuple[list[str], str]:
    tree, rest = rfc5322_parser.get_address_list(value)
    found, problem = [], "unparsable address" if rest or _address_defect(tree) else ""
    for box in tree.all_mailboxes:
        # the parser marks a mailbox invalid for a defect in its display name too: read the
        # addr-spec itself (the defects outside display names were judged above)
        spec = box if box.token_type == "mailbox" else _addr_spec(box)
        if spec is None or not spec.local_part:
            problem = problem or "unparsable address"
        elif not spec.domain:
            problem = problem or "address without a domain"
        else:
            found.append(_normalised(spec.local_part, spec.domain))
    return found, problem


def _addr_spec(token: rfc5322_parser.TokenList) -> Any:
    """The first addr-spec below ``token`` outside display names, or None."""
    for part in token:
        if not isinstance(part, rfc5322_parser.TokenList) or part.token_type == "display-name":
            continue
        if part.token_type == "addr-spec":
            return part
        found = _addr_spec(part)
        if found is not None:
            return found
    return None


def _address_defect(token: rfc5322_parser.TokenList) -> bool:
    """Whether the parser found invalid syntax outside display names (which are only display
    text: a quoted encoded word there, common from some mail programs, is no reason to refuse)."""
    if token.token_type == "display-name":
        return False
    if token.token_type == "obs-route":  # RFC 5322 4.4: a reader may show its domain as the author's
        return True
    if any(isinstance(defect, InvalidHeaderDefect) for defect in token.defects):
        return True
    return any(_address_defect(part) if isinstance(part, rfc5322_parser.TokenList)
               else any(isinstance(d, InvalidHeaderDefect) for d in part.defects) for part in token)


def _plain(value: str) -> list[str]:
    found = []
    for _name, address in email.utils.getaddresses([value]):
        local, at, domain = address.rpartition("@")
        if at and local and domain:
            found.append(_normalised(local, domain))
        elif address:
            found.append(address)
    return found


def parse_address_list(value: str) -> ParsedAddresses:
    """The addresses of an address-list value (groups flattened, display names dropped)."""
    if len(value) > MAX_ADDRESS_FIELD:
        return ParsedAddresses((), "address field too long")
    if len(_SPECIALS.findall(value)) > MAX_SPECIALS:
        return ParsedAddresses((), "too many quoted strings, comments or groups in an address field")
    if not value.strip():
        return ParsedAddresses(())
    try:
        strict, problem = _strict(value)
        plain = _plain(value)
    except Exception:
        return ParsedAddresses((), "unparsable address")
    if set(plain) - set(strict):
        problem = problem or "address read differently by different parsers"
    return ParsedAddresses(tuple(dict.fromkeys([*strict, *plain])), problem)


def _dns_name(text: str) -> str:
    """``text`` as a normalised DNS name (what DMARC can look up), or "" (an address literal, junk)."""
    try:
        name = normalize_domain(text)
    except AddressError:
        return ""
    return "" if name.startswith("[") or "." not in name else name


def _without_comments(value: str) -> str:
    """``value`` with its (nested) comments removed, unbalanced ones to the end (RFC 5322 3.2.2).
    One pass: a stdlib parser is not used here because this reads values it could not parse."""
    kept, depth, escaped = [], 0, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and depth:
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            kept.append(char)
    return "".join(kept)


def _lenient_domains(values: list[str]) -> list[str]:
    """Every domain name after an ``@``, with and without the comments (``ceo@(x)bank.example``):
    the domains a broken From: still names to some mail reader."""
    texts = [text for value in values for text in (value, _without_comments(value))]
    return [_dns_name(match.group(1)) for text in texts for match in _LENIENT_DOMAIN.finditer(text)]


def block_problem(block: HeaderBlock) -> str:
    """Why the block cannot be read the same way by every mail reader, or ""."""
    if block.bad_lines:
        return f"malformed header line ({block.bad_lines[0].reason})"
    return ""


@dataclass(frozen=True, slots=True)
class Author:
    """What the From: field says about the author domain (RFC 7489 6.6.1)."""

    domains: tuple[str, ...]  # every domain found (at most MAX_AUTHOR_DOMAINS + 1), in order
    problem: str = ""  # why the header block or the From: field cannot be read one way, or ""
    # a From: address names a domain that is no DNS name (``ceo@bank.example!``, an address
    # literal): its reader sees an author no DMARC policy can be found for, so none can be skipped
    undeterminable: bool = False

    @property
    def domain(self) -> str | None:
        """The one author domain, when there is exactly one and nothing is ambiguous."""
        return self.domains[0] if not self.problem and len(self.domains) == 1 else None


def _from_problem(block: HeaderBlock) -> str:
    froms = block.named("from")
    if len(froms) != 1:
        return f"{len(froms)} From fields (RFC 5322 3.6: exactly one)"
    if froms[0].obsolete:
        return "From field in obsolete syntax (white space before the colon)"
    return block_problem(block)


def _from_like_lines(block: HeaderBlock) -> list[str]:
    """The malformed lines that some mail reader may still take for a From field (`` From: x``
    first in the block, ``From\x01: x``, ``From x``): their domains count as author domains too."""
    lines = (block.data[bad.start:bad.end].decode("utf-8", "replace") for bad in block.bad_lines)
    return [line for line in lines if line.lstrip(" \t").lower().startswith("from")]


def author(block: HeaderBlock) -> Author:
    """The author domain(s) of a header block. With a problem, the domains are every domain any
    From: field names, read leniently: each is judged as failing DMARC (RFC 7489 6.6.1)."""
    values = [block.value(f) for f in block.named("from")]
    problem = _from_problem(block)
    domains: list[str] = []
    if not problem:
        parsed = parse_address_list(values[0])
        problem = parsed.problem or ("" if parsed.addresses else "From field without an address")
        domains = [_dns_name(a.rpartition("@")[2]) for a in parsed.addresses]
    if problem:
        domains.extend(_lenient_domains(values))
    undeterminable = "" in domains
    if problem:
        domains.extend(_lenient_domains(_from_like_lines(block)))
    unique = tuple(dict.fromkeys(d for d in domains if d))
    return Author(unique[: MAX_AUTHOR_DOMAINS + 1], problem, undeterminable)


def author_of(message_start: bytes) -> Author:
    """:func:`author` of the header block at the start of ``message_start``."""
    return author(parse_header_block(message_start))


def originator_addresses(block: HeaderBlock) -> tuple[str | None, tuple[str, ...]]:
    """(why the originator fields of a submitted message are refused, or None; their addresses).

    RFC 5322 3.6.2: exactly one From with at least one address; Sender and the Resent- fields
    must name an address too. Obsolete syntax and malformed lines are refused: other software
    would read such a block differently.
    """
    if not block.complete:
        return "header section too large or not terminated", ()
    problem = _from_problem(block)
    fields = block.named(*ORIGINATOR_FIELDS)
    if not problem and len(fields) > MAX_ORIGINATOR_FIELDS:
        problem = "too many originator fields"
    found: list[str] = []
    for field in fields if not problem else ():
        parsed = parse_address_list(block.value(field))
        if field.obsolete or parsed.problem or not parsed.addresses:
            reason = "obsolete syntax" if field.obsolete else parsed.problem or "no address"
            problem = f"{field.name} field: {reason}"
            break
        found.extend(parsed.addresses)
    return (problem or None), (() if problem else tuple(dict.fromkeys(found)))


# --- IMAP ENVELOPE addresses (RFC 9051 7.5.2, RFC 3501 7.4.2) ------------------------------------
# A lenient one-pass reader of address lists as bytes, like Dovecot's message-address parser: the
# text is kept as it is (encoded words not decoded, 8-bit UTF-8 of RFC 6532 kept), every address
# yields (name, adl, mailbox, host), and a group is framed by (NIL, NIL, name, NIL) and
# (NIL, NIL, NIL, NIL). Unlike the functions above, nothing is refused: IMAP shows what is there.

ImapAddress = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
MAX_IMAP_ADDRESSES = 1000
_ADDRESS_SPECIALS = frozenset(b'()<>@,;:\\"[]')
_ADDRESS_WSP = frozenset(b" \t\r\n")
MISSING_MAILBOX = b"MISSING_MAILBOX"  # Dovecot's placeholders for an address without them
MISSING_DOMAIN = b"MISSING_DOMAIN"
SYNTAX_ERROR = b"SYNTAX_ERROR"
INVALID_ROUTE = b"INVALID_ROUTE"
_EMPTY_ADDRESS: ImapAddress = (None, None, MISSING_MAILBOX, MISSING_DOMAIN)


def _address_tokens(value: bytes) -> list[tuple[str, bytes]]:
    """("word" | "quoted" | "comment" | "literal" | a special character, text) in order."""
    tokens: list[tuple[str, bytes]] = []
    at, size = 0, len(value)
    while at < size:
        char = value[at]
        if char in _ADDRESS_WSP:
            at += 1
        elif char == 0x22:
            text, at = _delimited(value, at + 1, 0x22)
            tokens.append(("quoted", text))
        elif char == 0x28:
            text, at = _comment(value, at + 1)
            tokens.append(("comment", text))
        elif char == 0x5B:
            text, at = _delimited(value, at + 1, 0x5D)
            tokens.append(("literal", b"[" + text + b"]"))
        elif char in _ADDRESS_SPECIALS:
            tokens.append((chr(char), bytes([char])))
            at += 1
        else:
            start = at
            while at < size and value[at] not in _ADDRESS_SPECIALS and value[at] not in _ADDRESS_WSP:
                at += 1
            tokens.append(("word", value[start:at]))
    return tokens


def _delimited(value: bytes, at: int, end: int) -> tuple[bytes, int]:
    out, size = bytearray(), len(value)
    while at < size and value[at] != end:
        if value[at] == 0x5C and at + 1 < size:
            at += 1
        out.append(value[at])
        at += 1
    return bytes(out), at + 1


def _comment(value: bytes, at: int) -> tuple[bytes, int]:
    out, depth, size = bytearray(), 1, len(value)
    while at < size:
        char = value[at]
        if char == 0x5C and at + 1 < size:
            at += 1
            char = value[at]
        elif char == 0x28:
            depth += 1
        elif char == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), at + 1
        out.append(char)
        at += 1
    return bytes(out), at


class _AddressReader:
    def __init__(self, tokens: list[tuple[str, bytes]]) -> None:
        self.tokens = tokens
        self.at = 0
        self.comment: bytes | None = None

    def peek(self) -> str:
        while self.at < len(self.tokens) and self.tokens[self.at][0] == "comment":
            self.comment = self.tokens[self.at][1]
            self.at += 1
        return self.tokens[self.at][0] if self.at < len(self.tokens) else ""

    def take(self) -> bytes:
        self.at += 1
        return self.tokens[self.at - 1][1]

    def phrase(self) -> list[tuple[str, bytes]]:
        words = []
        while self.peek() in ("word", "quoted", "literal", "."):
            words.append(self.tokens[self.at])
            self.at += 1
        return words

    def domain(self) -> bytes:
        pieces = []
        while self.peek() in ("word", "literal", "."):
            pieces.append(self.take())
        return b"".join(pieces)

    def route(self) -> bytes | None:
        """An obsolete route (RFC 5322 4.4) ``@a,@b:`` before the addr-spec, as IMAP's adl."""
        hops = []
        while self.peek() == "@":
            self.take()
            hops.append(b"@" + self.domain())
            while self.peek() == ",":
                self.take()
        if hops and self.peek() == ":":
            self.take()
        return b",".join(hops) if hops else None


def _phrase_text(words: list[tuple[str, bytes]]) -> bytes:
    out = bytearray()
    for index, (kind, text) in enumerate(words):
        if index and kind != "." and words[index - 1][0] != ".":
            out += b" "
        out += text
    return bytes(out)


def _local_part(words: list[tuple[str, bytes]]) -> bytes:
    return b"".join(text for _, text in words)


def _domain(reader: _AddressReader) -> bytes:
    """The domain after "@": one dot-atom or domain literal; MISSING_DOMAIN when it is empty or
    has an empty label (``example.``), as Dovecot shows it."""
    if reader.peek() not in ("word", "literal"):
        return MISSING_DOMAIN
    domain = reader.take()
    if domain.startswith(b"[") or (not domain.startswith(b".") and not domain.endswith(b".") and b".." not in domain):
        return domain
    return MISSING_DOMAIN


def _angle_address(reader: _AddressReader, name: bytes | None) -> ImapAddress:
    reader.take()  # "<"
    adl = reader.route()
    if adl is not None and reader.tokens[reader.at - 1][0] != ":":  # a route without its ":"
        _skip_to_separator(reader, (">", ",", ";"))
        adl, local, host = INVALID_ROUTE, b"", MISSING_DOMAIN
    else:
        local = _local_part(reader.phrase())
        host = MISSING_DOMAIN
        if reader.peek() == "@":
            reader.take()
            host = _domain(reader)
    _skip_to_separator(reader, (">", ",", ";"))
    if reader.peek() == ">":
        reader.take()
    else:
        host = SYNTAX_ERROR  # no ">" (as Dovecot shows it)
    return name, adl, local or MISSING_MAILBOX, host


def _mailbox(reader: _AddressReader) -> ImapAddress | None:
    """One mailbox. Read as Dovecot does: an addr-spec is one word or quoted string before "@";
    one word alone is a mailbox without domain; several words or a quoted string alone are a
    display name without address."""
    reader.comment = None
    words = reader.phrase()
    if reader.peek() == "<":
        return _angle_address(reader, _phrase_text(words) or None)
    if not words and reader.peek() == "@":  # "@domain": a domain without a mailbox
        reader.take()
        return None, None, MISSING_MAILBOX, _domain(reader)
    if not words:
        return None
    if len(words) > 1 or (reader.peek() != "@" and words[0][0] != "word"):
        return _phrase_text(words), None, MISSING_MAILBOX, MISSING_DOMAIN
    host = MISSING_DOMAIN
    if reader.peek() == "@":
        reader.take()
        host = _domain(reader)
    reader.peek()  # a trailing comment: the display name when there is none (Dovecot)
    return reader.comment, None, words[0][1], host


def _skip_to_separator(reader: _AddressReader, separators: tuple[str, ...]) -> None:
    while reader.peek() not in ("", *separators):
        reader.take()


def imap_addresses(value: bytes) -> list[ImapAddress]:
    """The addresses of an address-list value for ENVELOPE, groups framed as IMAP frames them."""
    reader = _AddressReader(_address_tokens(value))
    out: list[ImapAddress] = []
    while reader.peek() and len(out) < MAX_IMAP_ADDRESSES:
        start = reader.at
        words = reader.phrase()
        if reader.peek() == ":":  # RFC 5322 3.4: group = display-name ":" [group-list] ";"
            reader.take()
            out.append((None, None, _phrase_text(words), None))
            _group_members(reader, out)
            out.append((None, None, None, None))
        else:
            reader.at = start
            address = _mailbox(reader)
            _skip_to_separator(reader, (",",))
            if address is None and reader.peek() == ",":
                address = _EMPTY_ADDRESS  # an empty element before a comma (as Dovecot shows it)
            if address is not None:
                out.append(address)
        if reader.peek() in (",", ";"):
            reader.take()
    return out


def _group_members(reader: _AddressReader, out: list[ImapAddress]) -> None:
    comma = False
    while reader.peek() not in ("", ";") and len(out) < MAX_IMAP_ADDRESSES:
        address = _mailbox(reader)
        _skip_to_separator(reader, (",", ";"))
        if address is None and (reader.peek() == "," or comma):
            address = _EMPTY_ADDRESS  # an empty element between commas (as Dovecot shows it)
        if address is not None:
            out.append(address)
        if reader.peek() == ",":
            reader.take()
            comma = True
            if reader.peek() == ";":
                out.append(_EMPTY_ADDRESS)
    if reader.peek() == ";":
        reader.take()
