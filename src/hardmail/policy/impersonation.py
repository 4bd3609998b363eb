"""Impersonation warnings on incoming mail (docs/user-notices.md): whether the From: field of a
message from outside pretends to be someone of ours, and the plain-words warnings to show.

Two tests, on the first MAX_MAILBOXES mailboxes of the From: fields (read with the project's one
header parser, :mod:`hardmail.mime.headers`, and its address reader,
:func:`hardmail.mime.addresses.imap_addresses`):

- the display name is a local user's full name (``Account.display_name``, two words or more), a
  local address, or a local part with a separator (``bob.smith``, ``bob_smith``: "Bob Smith"),
  compared after NFKC, case folding, separators, white space and invisible characters removed,
  and also through the UTS #39 skeleton (``AIice`` with a capital I is ``Alice``). Generic and
  role names (GENERIC_NAMES: RFC 2142's mailbox names, ``billing``, ``noreply``...) and one-word
  names are never keys: strangers use them every day. A display name that is the sender's own
  local part (``Support <support@zendesk.example>``) claims nothing and is not matched. A full name
  followed by a note in brackets (``"Alice Liddell (via Google Docs)"``) is matched too, with its
  own words: services sending on someone's behalf write names so, and impostors copy them;
- the From: domain looks like a hosted domain (:mod:`hardmail.policy.lookalike`: UTS #39
  skeletons, NFKC homographs, edit distance, a hosted domain followed by more labels).

A From: address in a hosted domain (or below one, compared in A-label form) is not this check's
business: DMARC judges it. Nor is a From: domain in ``allow_domains`` (or below one) or an address
in ``allow_senders``.

Pure: no I/O besides reading the confusables table; the hook
(:mod:`hardmail.server.impersonation_hook`) gathers the local names and domains.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from hardmail.mime.addresses import MISSING_DOMAIN, MISSING_MAILBOX, SYNTAX_ERROR, imap_addresses
from hardmail.mime.headers import HeaderBlock, parse_header_block
from hardmail.mime.text import bytes_text, decode_header
from hardmail.policy.lookalike import (
    SHORT_DOMAIN,
    HostedDomains,
    ascii_domain,
    decoded_domain,
    in_any,
    look_alike,
    osa_distance,
    scripts_of,
    skeleton,
    trusted_domain,
    unicode_domain,
)

__all__ = ["SHORT_DOMAIN", "WARNING_FIELD", "Directory", "Finding", "Mailbox", "Settings", "Verdict", "judge",
           "judge_head", "look_alike", "osa_distance", "skeleton", "unicode_domain", "warning_positions"]

WARNING_FIELD = "X-Hardmail-Warning"
MAX_FROM_FIELDS = 8  # RFC 5322 3.6 allows one; more are looked at up to this many
MAX_MAILBOXES = 5  # mailboxes judged per message: each costs a few skeletons (attacker-controlled)
MAX_FIELD_VALUE = 4096  # bytes of a From: value read (the address parser's bound, MAX_ADDRESS_FIELD)
MIN_NAME = 3  # shorter names (after normalising) are never matched: too many strangers share them
MAX_SHOWN = 120  # characters of an address shown in a warning
FIELD_WIDTH = 78  # RFC 5322 2.1.1: lines SHOULD be no longer than 78 characters (folded, 2.2.3)
# Names that many unrelated senders use as their display name or local part: RFC 2142's mailbox
# names, roles and the words of newsletters and shops. Never a name key: matching them would
# warn on ordinary mail.
GENERIC_NAMES = frozenset({
    "postmaster", "abuse", "hostmaster", "webmaster", "noc", "security", "info", "marketing", "sales",
    "support", "billing", "admin", "administrator", "hr", "jobs", "it", "office", "team", "contact", "hello",
    "hi", "newsletter", "news", "noreply", "no-reply", "donotreply", "do-not-reply", "mail", "notifications",
    "service", "updates", "help", "accounts", "mailer-daemon",
})
_SEPARATORS = re.compile(r"[._\-]+")  # between the words of a local part (bob.smith, bob_smith)
_NOTE = re.compile(r"^(.*[^\s(])\s*\(([^()]*)\)$")  # a name followed by a note in brackets
_ADDRESS_IN_NAME = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
_NO_HOST = (MISSING_DOMAIN, SYNTAX_ERROR)  # the address reader's placeholders


# ----- names -----------------------------------------------------------------------------------

def _clean(text: str) -> str:
    """NFKC, invisible (format) characters and quotes removed, white space collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf" and c not in "\"'`")
    return " ".join(text.split())


def _spaced(text: str) -> str:
    """``text`` cleaned, with commas, dots, underscores and hyphens as spaces between its words."""
    return " ".join(_SEPARATORS.sub(" ", _clean(text).replace(",", " ")).split())


def _words(text: str) -> list[str]:
    """The case-folded words of a name."""
    return _spaced(text).casefold().split()


def name_keys(text: str) -> frozenset[str]:
    """The forms under which a name matches: its words case-folded, also through the skeleton,
    in their order and sorted (``Liddell, Alice`` and ``alice.liddell`` are ``Alice Liddell``)."""
    spaced = _spaced(text)
    folded = spaced.casefold()
    forms = {folded, skeleton(folded).casefold(), skeleton(spaced).casefold()}
    keys = forms | {" ".join(sorted(form.split())) for form in forms}
    return frozenset(key for key in keys if len(key.replace(" ", "")) >= MIN_NAME)


def _generic(words: list[str]) -> bool:
    return all(word in GENERIC_NAMES for word in words)


def local_part_keys(local: str) -> frozenset[str]:
    """The name keys of a local account's local part: only one of separate words (``bob.smith``),
    not a generic one (``no-reply``, ``sales.team``)."""
    words = _words(local)
    if local.casefold() in GENERIC_NAMES or len(words) < 2 or _generic(words):
        return frozenset()
    return name_keys(local)


def display_name_keys(name: str) -> frozenset[str]:
    """The name keys of a local account's display name: a full name (two words or more), not a
    generic one ("Support Team")."""
    words = _words(name)
    return frozenset() if len(words) < 2 or _generic(words) else name_keys(name)


@dataclass(frozen=True, slots=True)
class Directory:
    """What is local: name keys of the accounts, their addresses (local part case-folded, domain in
    A-label form) and the hosted domains with their look-up tables."""

    names: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    hosted: HostedDomains = field(default_factory=HostedDomains)

    @classmethod
    def build(cls, accounts: Iterable[tuple[str, str]], domains: Iterable[str]) -> Directory:
        """From (address, display name) pairs and the hosted domain names; CPU work done once per
        refresh (skeletons of every name and domain), not per message."""
        names: set[str] = set()
        addresses: set[str] = set()
        for address, display_name in accounts:
            local, _, domain = address.rpartition("@")
            addresses.add(f"{local.casefold()}@{trusted_domain(domain)}")
            names.update(display_name_keys(display_name) if display_name else ())
            names.update(local_part_keys(local))
        return cls(frozenset(names), frozenset(addresses), HostedDomains.build(domains))

    @property
    def domains(self) -> tuple[str, ...]:
        """The hosted domains, lower-case Unicode."""
        return tuple(h.name for h in self.hosted.domains)

    def hosts(self, domain: str) -> bool:
        """Whether ``domain`` (as written) is hosted or below a hosted domain (A-label form)."""
        return self.hosted.hosts(domain)


# ----- the verdict -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Settings:
    max_edit_distance: int = 2
    match_display_names: bool = True
    allow_domains: frozenset[str] = frozenset()  # A-label forms (:func:`trusted_domain`)
    allow_senders: frozenset[str] = frozenset()  # local part case-folded @ A-label domain

    @classmethod
    def build(cls, max_edit_distance: int = 2, match_display_names: bool = True,
              allow_domains: Iterable[str] = (), allow_senders: Iterable[str] = ()) -> Settings:
        """The settings with the allowlists as configured (any case, Unicode or A-labels)."""
        senders = {f"{local.casefold()}@{trusted_domain(domain)}"
                   for local, _, domain in (a.strip().rpartition("@") for a in allow_senders)}
        return cls(max_edit_distance, match_display_names,
                   frozenset(trusted_domain(d.strip()) for d in allow_domains if d.strip()), frozenset(senders))

    def allows(self, box: Mailbox) -> bool:
        """Whether the admin said this sender is never warned about."""
        domain = ascii_domain(box.domain.lower())
        return in_any(domain, self.allow_domains) or f"{box.local.casefold()}@{domain}" in self.allow_senders


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str  # the display name, encoded words decoded ("" when none)
    local: str
    domain: str  # as written, Unicode (xn-- labels decoded, not normalised)

    @property
    def shown(self) -> str:
        """The address as a warning shows it: printable ASCII, IDN labels in their xn-- form."""
        address = f"{ascii_text(self.local)}@{ascii_domain(self.domain.lower())}"
        return address if len(address) <= MAX_SHOWN else address[:MAX_SHOWN] + "..."


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # "name", "address-name", "homograph", "edit", "prefix"
    sender: str  # the From: address as shown
    text: str  # the warning in plain words (printable ASCII)
    local: str = ""  # the hosted domain it looks like (domain findings)


def fold(name: str, text: str, width: int = FIELD_WIDTH) -> str:
    """``name: text`` folded before white space into lines of at most ``width`` characters (a word
    longer than a line stays whole), CRLF-terminated (RFC 5322 2.2.3)."""
    lines = textwrap.wrap(f"{name}: {text}", width, subsequent_indent=" ", break_long_words=False,
                          break_on_hyphens=False)
    return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True, slots=True)
class Verdict:
    findings: tuple[Finding, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.findings)

    @property
    def headers(self) -> bytes:
        """One ``X-Hardmail-Warning`` field per finding, folded at FIELD_WIDTH."""
        return b"".join(fold(WARNING_FIELD, f.text).encode("ascii") for f in self.findings)

    def notice_lines(self, width: int = 72) -> list[str]:
        """The warning to put at the top of the visible text, wrapped to ``width``, with an empty
        line after it."""
        lines: list[str] = []
        for finding in self.findings:
            lines.extend(textwrap.wrap(f"WARNING: {finding.text}.", width, break_long_words=True))
        return [*lines, ""]


def from_mailboxes(block: HeaderBlock) -> list[Mailbox]:
    """The mailboxes of the From: fields (at most MAX_MAILBOXES), display names decoded."""
    found: list[Mailbox] = []
    for header in block.named("from")[:MAX_FROM_FIELDS]:
        value = block.raw_value(header)[:MAX_FIELD_VALUE]
        for name, _adl, local, host in imap_addresses(value):
            if local in (None, MISSING_MAILBOX) or host in (None, *_NO_HOST) or host.startswith(b"["):
                continue
            display = decode_header(name) if name else ""
            found.append(Mailbox(display, bytes_text(local), decoded_domain(bytes_text(host))))
            if len(found) >= MAX_MAILBOXES:
                return found
    return found


def _address_finding(box: Mailbox, directory: Directory) -> Finding | None:
    for candidate in _ADDRESS_IN_NAME.findall(_clean(box.name)):
        local, _, domain = candidate.rpartition("@")
        if f"{local.casefold()}@{trusted_domain(domain)}" in directory.addresses:
            text = (f"The sender's name is the address {ascii_text(candidate)} of your organisation, "
                    f"but the message came from outside (address {box.shown})")
            return Finding("address-name", box.shown, text)
    return None


def _name_finding(box: Mailbox, directory: Directory) -> Finding | None:
    if not box.name.strip():
        return None
    found = _address_finding(box, directory)
    if found is not None or _clean(box.name).casefold() == _clean(box.local).casefold():
        return found  # a name that is the sender's own local part claims nothing more than the address
    if name_keys(box.name) & directory.names:
        text = ("The sender's name matches a person in your organisation, but the message came from "
                f"outside (address {box.shown})")
        return Finding("name", box.shown, text)
    note = _NOTE.match(_clean(box.name))
    if note is not None and name_keys(note.group(1)) & directory.names:
        text = ("The sender's name is a person in your organisation followed by a note in brackets, as "
                "services sending on someone's behalf write it and impostors copy it, but the message came "
                f"from outside (address {box.shown})")
        return Finding("name", box.shown, text)
    return None


def _domain_finding(box: Mailbox, directory: Directory, settings: Settings) -> Finding | None:
    found = directory.hosted.look_alike(box.domain, settings.max_edit_distance)
    if found is None:
        return None
    kind, hosted = found
    text = f"The sender's domain {ascii_domain(box.domain.lower())} looks like your domain {hosted.ascii}"
    if not box.domain.isascii():
        others = sorted(s.capitalize() for s in scripts_of(box.domain) - {"LATIN"})
        text += (f" (it is written with letters of another alphabet: {', '.join(others)})" if others
                 else " (it is written with letters that look like others)")
    return Finding(kind, box.shown, text, hosted.ascii)


def ascii_text(text: str) -> str:
    """``text`` as printable ASCII for a header field ("?" for anything else), bounded."""
    shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return shown if len(shown) <= MAX_SHOWN else shown[:MAX_SHOWN] + "..."


def judge(block: HeaderBlock, directory: Directory, settings: Settings) -> Verdict:
    """The warnings for a message from outside with this header block."""
    findings: list[Finding] = []
    for box in from_mailboxes(block):
        if directory.hosts(box.domain) or settings.allows(box):
            continue  # our own domain from outside: DMARC's business; an allowed sender: the admin's
        named = _name_finding(box, directory) if settings.match_display_names else None
        for finding in (named, _domain_finding(box, directory, settings)):
            if finding is not None and finding.text not in {f.text for f in findings}:
                findings.append(finding)
    return Verdict(tuple(findings))


def judge_head(head: bytes, directory: Directory, settings: Settings) -> Verdict:
    """:func:`judge` of the header block at the start of ``head``."""
    return judge(parse_header_block(head), directory, settings)


def warning_positions(block: HeaderBlock) -> tuple[int, ...]:
    """Positions of incoming ``X-Hardmail-Warning`` fields (to be removed: only we write them)."""
    return block.positions(WARNING_FIELD.lower())
