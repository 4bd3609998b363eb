"""Mail addresses: parsing of RFC 5321 mailboxes, domain normalisation (IDNA) and plus tags.

RFC 5321 4.1.2 gives the grammar (Mailbox = Local-part "@" ( Domain / address-literal )),
RFC 6531 3.3 extends it to UTF-8 for SMTPUTF8 sessions.
Lookups use :attr:`Address.key`: the local part lower-cased and the domain as a lower-case A-label.
"""

from __future__ import annotations

import ipaddress
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
MAX_MAILBOX = MAX_PATH - 2  # the path's "<" and ">" count towards MAX_PATH


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
    name = domain.strip().removesuffix(".")
    if not name or len(name) > MAX_DOMAIN:
        raise AddressError(f"invalid domain length: {domain!r}")
    if _ADDRESS_LITERAL.match(name):
        return _normalize_literal(name)
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(f"invalid internationalised domain {domain!r}: {exc}") from None
    labels = name.lower().split(".")
    if not all(_LDH_LABEL.match(label) and _valid_a_label(label) for label in labels):
        raise AddressError(f"invalid domain name: {domain!r}")
    return ".".join(labels)


def _valid_a_label(label: str) -> bool:
    """An ``xn--`` label must decode as IDNA (RFC 5890 2.3.2.1); others pass."""
    if not label.startswith("xn--"):
        return True
    try:
        idna.decode(label)
    except UnicodeError:  # idna.IDNAError is a UnicodeError
        return False
    return True


def _normalize_literal(name: str) -> str:
    """RFC 5321 4.1.3: ``[IPv4]`` or ``[IPv6:addr]``; general address literals are refused."""
    inner = name[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[ipv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        raise AddressError(f"invalid address literal: {name!r}") from None


def _valid_local(local: str, utf8: bool) -> bool:
    dot, quoted = (_DOT_STRING_UTF8, _QUOTED_STRING_UTF8) if utf8 else (_DOT_STRING, _QUOTED_STRING)
    return bool(dot.match(local) or quoted.match(local))


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def parse_mailbox(text: str, *, utf8: bool = False) -> Address:
    """Parse ``local@domain`` (no angle brackets). ``utf8`` allows RFC 6531 addresses."""
    if "@" not in text:
        raise AddressError("address must be local-part@domain")
    if _octets(text) > MAX_MAILBOX:  # RFC 5321 4.5.3.1.3
        raise AddressError(f"address longer than {MAX_MAILBOX} octets")
    local, _, domain = text.rpartition("@")
    if not local or _octets(local) > MAX_LOCAL_PART:
        raise AddressError("local part missing or longer than 64 octets")
    if not _valid_local(local, utf8):
        raise AddressError("local part has characters not allowed by RFC 5321")
    if not utf8 and not domain.isascii():
        raise AddressError("non-ASCII domain needs SMTPUTF8")
    if domain != domain.strip():
        raise AddressError("domain must not contain spaces")
    return Address(local, normalize_domain(domain))


def parse_address_arg(text: str) -> Address:
    """Parse an address typed by an admin (UTF-8 allowed); raises AddressError."""
    return parse_mailbox(text.strip(), utf8=True)


def is_ascii_address(address: Address) -> bool:
    return address.local.isascii() and address.domain.isascii()
