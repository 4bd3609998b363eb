"""Impersonation warnings on incoming mail (docs/user-notices.md): whether the From: field of a
message from outside pretends to be someone of ours, and the plain-words warnings to show.

Two tests, on every mailbox of every From: field (read with the project's one header parser,
:mod:`hardmail.mime.headers`, and its address reader, :func:`hardmail.mime.addresses.imap_addresses`):

- the display name is a local user's name (``Account.display_name``), a local address, or the
  local part of a local account, compared after NFKC, case folding, white space and invisible
  characters removed, and also through the UTS #39 skeleton (``AIice`` with a capital I is
  ``Alice``);
- the From: domain looks like a hosted domain: the same UTS #39 skeleton (``examp1e.org``,
  ``exarnple.org``, ``xn--xample-2of.org``: example.org with a Cyrillic ie), an edit distance (optimal string
  alignment: insertions, deletions, substitutions, swaps of neighbours) of 1 to
  ``[impersonation] max_edit_distance`` on its last labels (``mail.exampel.org``,
  ``example.co`` for ``example.com``; one edit at most when the domain is shorter than
  SHORT_DOMAIN characters), or the hosted domain followed by more labels
  (``example.org.evil.test``).

A From: address in a hosted domain (or below one) is not this check's business: DMARC judges it.
The confusables table is Unicode's (UTS #39 ``confusables.txt``) as shipped by the
``confusable-homoglyphs`` package, read lazily once per process (:func:`skeleton`).

Pure: no I/O besides reading the package's bundled data; the hook
(:mod:`hardmail.server.impersonation_hook`) gathers the local names and domains.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from hardmail.mime.addresses import MISSING_DOMAIN, MISSING_MAILBOX, SYNTAX_ERROR, imap_addresses
from hardmail.mime.headers import HeaderBlock, parse_header_block
from hardmail.mime.text import bytes_text, decode_header

WARNING_FIELD = "X-Hardmail-Warning"
MAX_FROM_FIELDS = 8  # RFC 5322 3.6 allows one; more are looked at up to this many
MAX_MAILBOXES = 8  # mailboxes judged per message
MAX_FIELD_VALUE = 4096  # bytes of a From: value read (the address parser's bound, MAX_ADDRESS_FIELD)
SHORT_DOMAIN = 8  # a hosted domain shorter than this gets at most one edit (ab.io vs ac.io, not xy.io)
MIN_NAME = 3  # shorter names (after normalising) are never matched: too many strangers share them
MAX_SHOWN = 120  # characters of an address shown in a warning
# Local parts that many unrelated senders use as their display name (newsletters, shops): matching
# them would warn on ordinary mail. A display name is still matched against the account's own name.
GENERIC_LOCAL_PARTS = frozenset({
    "contact", "hello", "hi", "info", "mail", "news", "newsletter", "no-reply", "noreply", "notifications",
    "office", "sales", "service", "team", "updates",
})
_ADDRESS_IN_NAME = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
_SCRIPTS_IGNORED = frozenset({"COMMON", "INHERITED", "Unknown"})
_NO_HOST = (MISSING_DOMAIN, SYNTAX_ERROR)  # the address reader's placeholders
_MARKS = "\u200e\u200f"  # LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK


# ----- UTS #39 skeletons -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Character -> its class representative under UTS #39 confusability.

    The package's table lists each ``confusables.txt`` pair in both directions (source ->
    prototype and prototype -> sources), so the direction is rebuilt here: a character with
    several entries, or whose one partner has several, is a prototype; a source with a
    multi-character prototype (``m`` -> ``rn``) says so. When a prototype has a single source the
    two list each other and cannot be told apart: both map to the smaller one, which gives the
    same classes, and equal skeletons are all this module asks for.
    """
    from confusable_homoglyphs.utils import load  # ~1 MB of JSON: loaded at the first use only

    table: dict[str, list[str]] = {}
    for key, entries in load("confusables.json").items():  # right-to-left text comes wrapped in LRMs
        table.setdefault(key.strip(_MARKS), []).extend(entry["c"].strip(_MARKS) for entry in entries)
    mapping: dict[str, str] = {}
    for char, targets in table.items():
        if len(char) != 1:
            continue
        if any(len(target) > 1 for target in targets):
            mapping[char] = next(target for target in targets if len(target) > 1)
        elif len(targets) == 1 and len(table.get(targets[0], ())) > 1:
            mapping[char] = targets[0]
        elif len(targets) == 1:
            mapping[char] = min(char, targets[0])
    return {char: "".join(mapping.get(c, c) for c in target) for char, target in mapping.items()}


def skeleton(text: str) -> str:
    """UTS #39 4: NFD, each character to its prototype, NFD again."""
    table = _prototypes()
    mapped = "".join(table.get(char, char) for char in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


def scripts_of(text: str) -> set[str]:
    """The scripts of the letters in ``text`` (Common and Inherited characters left out)."""
    from confusable_homoglyphs.categories import alias

    return {alias(char) for char in text} - _SCRIPTS_IGNORED


def osa_distance(left: str, right: str, limit: int) -> int:
    """Optimal string alignment distance (Damerau-Levenshtein without re-edits), or ``limit + 1``
    as soon as it must exceed ``limit`` (a length difference above it, or a whole row above it)."""
    if abs(len(left) - len(right)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(right) + 1))
    for i, a in enumerate(left, 1):
        row = [i] + [0] * len(right)
        for j, b in enumerate(right, 1):
            cost = a != b
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a == right[j - 2] and left[i - 2] == b:
                row[j] = min(row[j], before[j - 2] + 1)
        if min(row) > limit:
            return limit + 1
        before, previous = previous, row
    return min(previous[-1], limit + 1)


# ----- domains ---------------------------------------------------------------------------------

def unicode_domain(name: str) -> str:
    """``name`` with its ``xn--`` labels decoded (RFC 3492), NFKC, without a trailing dot; a label
    that does not decode stays as written."""
    labels = []
    for label in name.strip().rstrip(".").split("."):
        if label[:4].lower() == "xn--":
            with contextlib.suppress(UnicodeError, ValueError):
                label = label[4:].encode("ascii").decode("punycode")
        labels.append(unicodedata.normalize("NFKC", label))
    return ".".join(labels)


def ascii_domain(name: str) -> str:
    """``name`` as shown in a warning: each non-ASCII label as its ``xn--`` form (RFC 3492)."""
    labels = []
    for label in name.split("."):
        if not label.isascii():
            try:
                label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                label = "?" * len(label)
        labels.append(label)
    return ".".join(labels)


def within(domain: str, parent: str) -> bool:
    """Whether ``domain`` is ``parent`` or a name below it."""
    return domain == parent or domain.endswith("." + parent)


def look_alike(domain: str, local: str, max_distance: int) -> str | None:
    """Why ``domain`` (as written, Unicode) looks like the hosted ``local`` (lower-case Unicode):
    "homograph", "edit" or "prefix"; None when it does not, or when it is ``local`` or below it."""
    lower = domain.lower()
    if within(lower, local):
        return None
    wanted = local.split(".")
    labels = domain.split(".")
    tail = ".".join(labels[-len(wanted):])
    target = skeleton(local)
    if target in (skeleton(tail), skeleton(tail.lower())):
        return "homograph"
    allowed = min(max_distance, 1 if len(local) < SHORT_DOMAIN else max_distance)
    if allowed > 0:
        nearest = min(osa_distance(tail.lower(), local, allowed),
                      osa_distance(skeleton(tail.lower()), target, allowed))
        if 1 <= nearest <= allowed:
            return "edit"
    if len(labels) > len(wanted) and [label.lower() for label in labels[:len(wanted)]] == wanted:
        return "prefix"
    return None


# ----- names -----------------------------------------------------------------------------------

def _clean(text: str) -> str:
    """NFKC, invisible (format) characters and quotes removed, white space collapsed."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf" and c not in "\"'`")
    return " ".join(text.split())


def name_keys(text: str) -> frozenset[str]:
    """The forms under which a name matches: case-folded, through the skeleton, words sorted
    (``Liddell, Alice`` is ``Alice Liddell``)."""
    name = _clean(text)
    folded = name.casefold()
    words = folded.replace(",", " ").split()
    keys = {folded, skeleton(name).casefold(), skeleton(folded).casefold(), " ".join(sorted(words))}
    return frozenset(key for key in keys if len(key.replace(" ", "")) >= MIN_NAME)


@dataclass(frozen=True, slots=True)
class Directory:
    """What is local: name keys of the accounts, their addresses and the hosted domains
    (lower-case Unicode)."""

    names: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()

    @classmethod
    def build(cls, accounts: Iterable[tuple[str, str]], domains: Iterable[str]) -> Directory:
        """From (address, display name) pairs and the hosted domain names."""
        names: set[str] = set()
        addresses: set[str] = set()
        for address, display_name in accounts:
            local, _, domain = address.lower().rpartition("@")
            addresses.add(f"{local}@{unicode_domain(domain).lower()}")
            names.update(name_keys(display_name) if display_name else ())
            names.update(name_keys(address))
            if local not in GENERIC_LOCAL_PARTS:
                names.update(name_keys(local))
        hosted = tuple(dict.fromkeys(unicode_domain(d).lower() for d in domains if d))
        return cls(frozenset(names), frozenset(addresses), hosted)

    def hosts(self, domain: str) -> bool:
        return any(within(domain, local) for local in self.domains)


# ----- the verdict -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Settings:
    max_edit_distance: int = 2
    match_display_names: bool = True


@dataclass(frozen=True, slots=True)
class Mailbox:
    name: str  # the display name, encoded words decoded ("" when none)
    local: str
    domain: str  # as written, Unicode (xn-- labels decoded)

    @property
    def shown(self) -> str:
        """The address as a warning shows it: printable ASCII, IDN labels in their xn-- form."""
        local = "".join(c if c.isascii() and c.isprintable() else "?" for c in self.local)
        address = f"{local}@{ascii_domain(self.domain.lower())}"
        return address if len(address) <= MAX_SHOWN else address[:MAX_SHOWN] + "..."


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # "name", "address-name", "homograph", "edit", "prefix"
    sender: str  # the From: address as shown
    text: str  # the warning in plain words (printable ASCII)
    local: str = ""  # the hosted domain it looks like (domain findings)


@dataclass(frozen=True, slots=True)
class Verdict:
    findings: tuple[Finding, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.findings)

    @property
    def headers(self) -> bytes:
        """One ``X-Hardmail-Warning`` field per finding, CRLF-terminated."""
        return b"".join(f"{WARNING_FIELD}: {f.text}\r\n".encode("ascii") for f in self.findings)

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
            found.append(Mailbox(display, bytes_text(local), unicode_domain(bytes_text(host))))
            if len(found) >= MAX_MAILBOXES:
                return found
    return found


def _name_finding(box: Mailbox, directory: Directory) -> Finding | None:
    if not box.name.strip():
        return None
    for candidate in _ADDRESS_IN_NAME.findall(_clean(box.name)):
        local, _, domain = candidate.casefold().rpartition("@")
        if f"{local}@{unicode_domain(domain).lower()}" in directory.addresses:
            text = (f"The sender's name is the address {ascii_text(candidate)} of your organisation, "
                    f"but the message came from outside (address {box.shown})")
            return Finding("address-name", box.shown, text)
    if name_keys(box.name) & directory.names:
        text = ("The sender's name matches a person in your organisation, but the message came from "
                f"outside (address {box.shown})")
        return Finding("name", box.shown, text)
    return None


def _domain_finding(box: Mailbox, directory: Directory, settings: Settings) -> Finding | None:
    for local in directory.domains:
        kind = look_alike(box.domain, local, settings.max_edit_distance)
        if kind is None:
            continue
        shown = ascii_domain(box.domain.lower())
        text = f"The sender's domain {shown} looks like your domain {ascii_domain(local)}"
        if not box.domain.isascii():
            others = sorted(s.capitalize() for s in scripts_of(box.domain) - {"LATIN"})
            text += (f" (it is written with letters of another alphabet: {', '.join(others)})" if others
                     else " (it is written with letters that look like others)")
        return Finding(kind, box.shown, text, ascii_domain(local))
    return None


def ascii_text(text: str) -> str:
    """``text`` as printable ASCII for a header field ("?" for anything else), bounded."""
    shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in text)
    return shown if len(shown) <= MAX_SHOWN else shown[:MAX_SHOWN] + "..."


def judge(block: HeaderBlock, directory: Directory, settings: Settings) -> Verdict:
    """The warnings for a message from outside with this header block."""
    findings: list[Finding] = []
    for box in from_mailboxes(block):
        domain = box.domain.lower()
        if directory.hosts(domain):
            continue  # our own domain from outside: DMARC's business
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
