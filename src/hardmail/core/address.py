"""Mail addresses: parsing of RFC 5321 mailboxes, domain normalisation (IDNA) and plus tags.

RFC 5321 4.1.2 gives the grammar (Mailbox = Local-part "@" ( Domain / address-literal )),
RFC 6531 3.3 extends it to UTF-8 for SMTPUTF8 sessions.
Lookups use :attr:`Address.key`: the local part lower-cased and the domain as a lower-case A-label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

# RFC 5321 4.1.2: atext from RFC 5322 3.2.3
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-"
_DOT_STRING = re.compile(rf"^[{_ATEXT}]+(\.[{_ATEXT}]+)*$")
_DOT_STRING_UTF8 = re.compile(rf"^([{_ATEXT}]|[^\x00-\x7f])+(\.([{_ATEXT}]|[^\x00-\x7f])+)*$")
_QUOTED_STRING = re.compile(r'^"([\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"$')
_QUOTED_STRING_UTF8 = re.compile(r'^"([\x20\x21\x23-\x5b\x5d-\x7e]|[^\x00-\x7f]|\\[\x20-\x7e])*"$')
_LDH_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_ADDRESS_LITERAL = re.compile(r"^\[[^\[\]\\]+\]$")

MAX_LOCAL_PART = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255  # RFC 5321 4.5.3.1.2
MAX_PATH = 256  # RFC 5321 4.5.3.1.3


class AddressError(ValueError):
    """An address that does not follow RFC 5321 4.1.2."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str  # as a lower-case A-label, or an address literal in brackets

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def key(self) -> str:
        """The lookup form: local part lower-cased, domain normalised."""
        return f"{self.local.lower()}@{self.domain}"

    def without_tag(self, separator: str = "+") -> Address | None:
        """``user+tag@d`` → ``user@d``; ``None`` when there is no tag."""
        if not separator or separator not in self.local:
            return None
        base = self.local.split(separator, 1)[0]
        return Address(base, self.domain) if base else None


def normalize_domain(domain: str) -> str:
    """Lower-case A-label form of a host name; raises AddressError if it is not a valid name."""
    name = domain.strip().rstrip(".")
    if not name or len(name) > MAX_DOMAIN:
        raise AddressError(f"invalid domain length: {domain!r}")
    if _ADDRESS_LITERAL.match(name):
        return name.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"invalid internationalised domain {domain!r}: {exc}") from None
    labels = name.lower().split(".")
    if not all(_LDH_LABEL.match(label) for label in labels):
        raise AddressError(f"invalid domain name: {domain!r}")
    return ".".join(labels)


def _valid_local(local: str, utf8: bool) -> bool:
    dot, quoted = (_DOT_STRING_UTF8, _QUOTED_STRING_UTF8) if utf8 else (_DOT_STRING, _QUOTED_STRING)
    return bool(dot.match(local) or quoted.match(local))


def parse_mailbox(text: str, *, utf8: bool = False) -> Address:
    """Parse ``local@domain`` (no angle brackets). ``utf8`` allows RFC 6531 addresses."""
    if len(text) > MAX_PATH or "@" not in text:
        raise AddressError("address must be local-part@domain")
    local, _, domain = text.rpartition("@")
    if not local or len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise AddressError("local part missing or longer than 64 octets")
    if not _valid_local(local, utf8):
        raise AddressError("local part has characters not allowed by RFC 5321")
    if not utf8 and not domain.isascii():
        raise AddressError("non-ASCII domain needs SMTPUTF8")
    return Address(local, normalize_domain(domain))


def parse_address_arg(text: str) -> Address:
    """Parse an address typed by an admin (UTF-8 allowed); raises AddressError."""
    return parse_mailbox(text.strip(), utf8=True)


def is_ascii_address(address: Address) -> bool:
    return address.local.isascii() and address.domain.isascii()
