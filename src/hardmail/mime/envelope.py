"""The IMAP ENVELOPE of a message (RFC 9051 7.5.2, RFC 3501 7.4.2): date, subject, the address
lists and the message ids, from the raw header values (unfolded, not decoded: encoded words and
RFC 6532 8-bit UTF-8 stay as they are, as IMAP servers show them). Values are in the generic
nested form of the IMAP encoder: None is NIL, bytes are strings, lists are parenthesised."""

from __future__ import annotations

import re
from typing import Any

from hardmail.imap.values import Run
from hardmail.mime.addresses import imap_addresses
from hardmail.mime.headers import HeaderBlock

_WHITE_SPACE = re.compile(rb"[ \t]+")
ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def _first(block: HeaderBlock, name: str) -> bytes | None:
    """The first ``name`` field's value as it is: unfolded, white space at its start removed."""
    found = block.named(name)
    return block.raw_value(found[0], strip_end=False) if found else None


def _subject(block: HeaderBlock) -> bytes | None:
    """The Subject with each run of white space as one space, none at the ends (as Dovecot)."""
    found = block.named("subject")
    return _WHITE_SPACE.sub(b" ", block.raw_value(found[0])) if found else None


def _addresses(block: HeaderBlock, name: str) -> list[Any] | None:
    """An env-* address list: the addresses of every ``name`` field (as Dovecot joins them);
    NIL when there are none (RFC 9051 7.5.2)."""
    found = [address for field in block.named(name) for address in imap_addresses(block.raw_value(field))]
    return [Run(list(address) for address in found)] if found else None


def envelope(block: HeaderBlock) -> list[Any]:
    """The ENVELOPE of the message whose header block is ``block``.

    RFC 9051 7.5.2: Sender and Reply-To default to From when absent (or empty)."""
    lists = {name: _addresses(block, name) for name in ADDRESS_FIELDS}
    for name in ("sender", "reply-to"):
        if lists[name] is None:
            lists[name] = lists["from"]
    # a field that is there but empty is "", not NIL (as Dovecot sends it)
    return [
        _first(block, "date"),
        _subject(block),
        *(lists[name] for name in ADDRESS_FIELDS),
        _first(block, "in-reply-to"),
        _first(block, "message-id"),
    ]
