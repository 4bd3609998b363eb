"""Look-alike domains for the impersonation warnings (:mod:`hardmail.policy.impersonation`):
UTS #39 skeletons, the edit distance, the forms a domain is compared in, and the index of the
hosted domains (:class:`HostedDomains`) built once per directory refresh.

A domain is compared in its A-label form (RFC 5890 2.3.2.1: each non-ASCII label as ``xn--``,
RFC 3492), lower-cased but *not* NFKC-normalised: ``\uff45xample.org`` (a fullwidth e) is not
``example.org``. Its NFKC form is what many programs show, so a domain that differs from its
NFKC form, whose NFKC form is hosted or has a hosted domain's skeleton, is a homograph.

A look-alike of a hosted domain is, in this order: the same UTS #39 skeleton on its last labels
(``examp1e.org``, ``exarnple.org``, ``xn--xample-2of.org``: example.org with a Cyrillic ie), an
edit distance (optimal string alignment: insertions, deletions, substitutions, swaps of
neighbours) of 1 to ``max_distance`` on its last labels (one edit at most when the hosted domain
is shorter than SHORT_DOMAIN characters), or the hosted domain followed by more labels
(``example.org.evil.test``). The index looks hosted domains up by skeleton, by label count and
length, and by first labels, so that a message costs a few skeletons and a handful of edit
distances whatever the number of hosted domains.

The confusables table is Unicode's (UTS #39 ``confusables.txt``) as shipped by the
``confusable-homoglyphs`` package, read lazily once per process (:func:`skeleton`).
"""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

SHORT_DOMAIN = 8  # a hosted domain shorter than this gets at most one edit (ab.io vs ac.io, not xy.io)
_SCRIPTS_IGNORED = frozenset({"COMMON", "INHERITED", "Unknown"})
_MARKS = "\u200e\u200f"  # LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # RFC 3490 3.1: label separators


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


# ----- domain forms ----------------------------------------------------------------------------

def decoded_domain(name: str) -> str:
    """``name`` with its ``xn--`` labels decoded (RFC 3492), without a trailing dot, otherwise as
    written (no normalisation); a label that does not decode stays as written."""
    labels = []
    for label in name.strip().rstrip(".").split("."):
        if label[:4].lower() == "xn--":
            with contextlib.suppress(UnicodeError, ValueError):
                label = label[4:].encode("ascii").decode("punycode")
        labels.append(label)
    return ".".join(labels)


def unicode_domain(name: str) -> str:
    """:func:`decoded_domain`, then NFKC per label (for names we trust: hosted, allowed)."""
    return ".".join(unicodedata.normalize("NFKC", label) for label in decoded_domain(name).split("."))


def nfkc_domain(name: str) -> str:
    """What a program that normalises shows for ``name``: NFKC, the IDNA full stops as dots, lower case."""
    return unicodedata.normalize("NFKC", name).translate(_DOTS).lower()


def ascii_domain(name: str) -> str:
    """``name`` in its A-label form: each non-ASCII label as ``xn--`` (RFC 3492), any other
    character that is not printable ASCII (a DEL, a control) as "?". Compared and shown."""
    labels = []
    for label in name.split("."):
        if not label.isascii():
            try:
                label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                label = "?" * len(label)
        labels.append("".join(c if c.isprintable() else "?" for c in label))
    return ".".join(labels)


def trusted_domain(name: str) -> str:
    """The A-label form of a hosted or allowed domain as configured (NFKC, lower case)."""
    return ascii_domain(unicode_domain(name).lower())


def within(domain: str, parent: str) -> bool:
    """Whether ``domain`` is ``parent`` or a name below it."""
    return domain == parent or domain.endswith("." + parent)


def in_any(domain: str, parents: frozenset[str]) -> bool:
    """Whether the A-label form ``domain`` is one of ``parents`` or below one."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in parents for i in range(len(labels)))


# ----- the hosted domains' index ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hosted:
    """A hosted domain with what comparisons need, computed once."""

    order: int
    name: str  # lower-case Unicode (NFKC)
    ascii: str  # its A-label form
    size: int  # number of labels
    skeleton: str
    grams: frozenset[tuple[str, int]] = frozenset()  # bigrams of name (see :func:`bigrams`)
    skeleton_grams: frozenset[tuple[str, int]] = frozenset()

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.name.split("."))


@dataclass(frozen=True, slots=True)
class HostedDomains:
    """The hosted domains and their look-up tables (built by :meth:`build`, read-only after)."""

    domains: tuple[Hosted, ...] = ()
    by_ascii: dict[str, Hosted] = field(default_factory=dict)
    sizes: tuple[int, ...] = ()
    by_skeleton: dict[tuple[int, str], Hosted] = field(default_factory=dict)
    by_length: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)  # -> orders
    by_skeleton_length: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    by_labels: dict[tuple[str, ...], Hosted] = field(default_factory=dict)

    @classmethod
    def build(cls, names: Iterable[str]) -> HostedDomains:
        unique = dict.fromkeys(unicode_domain(n).lower() for n in names if n)
        hosted = tuple(Hosted(i, n, ascii_domain(n), n.count(".") + 1, skeleton(n), bigrams(n), bigrams(skeleton(n)))
                       for i, n in enumerate(unique))
        by_skeleton: dict[tuple[int, str], Hosted] = {}
        by_length: dict[tuple[int, int], list[int]] = {}
        by_skeleton_length: dict[tuple[int, int], list[int]] = {}
        by_labels: dict[tuple[str, ...], Hosted] = {}
        for h in hosted:
            by_skeleton.setdefault((h.size, h.skeleton), h)
            by_length.setdefault((h.size, len(h.name)), []).append(h.order)
            by_skeleton_length.setdefault((h.size, len(h.skeleton)), []).append(h.order)
            by_labels.setdefault(h.labels, h)
        return cls(hosted, {h.ascii: h for h in reversed(hosted)}, tuple(sorted({h.size for h in hosted})),
                   by_skeleton, {k: tuple(v) for k, v in by_length.items()},
                   {k: tuple(v) for k, v in by_skeleton_length.items()}, by_labels)

    def hosts(self, domain: str) -> bool:
        """Whether ``domain`` (as written) is a hosted domain or below one, in its A-label form."""
        return self._hosting(ascii_domain(domain.lower())) is not None

    def look_alike(self, domain: str, max_distance: int) -> tuple[str, Hosted] | None:
        """Why ``domain`` (as written, ``xn--`` labels decoded) looks like a hosted domain, and which:
        "homograph", "edit" or "prefix"; None when it does not, or when it is hosted itself."""
        if self.hosts(domain):
            return None
        lower, nfkc = domain.lower(), nfkc_domain(domain)
        folded = tuple(dict.fromkeys((lower, nfkc)))  # what the edit and prefix tests look at
        if nfkc != lower:  # written so that it normalises into a hosted domain
            hosting = self._hosting(ascii_domain(nfkc))
            if hosting is not None:
                return "homograph", hosting
        return self._homograph((domain, *folded)) or self._edit(folded, max_distance) or self._prefix(folded)

    def _hosting(self, ascii: str) -> Hosted | None:
        """The hosted domain that the A-label form ``ascii`` is, or is below."""
        labels = ascii.split(".")
        return next((self.by_ascii[s] for s in (".".join(labels[i:]) for i in range(len(labels)))
                     if s in self.by_ascii), None)

    def _tail(self, form: str, size: int) -> str:
        return ".".join(form.split(".")[-size:])

    def _homograph(self, forms: tuple[str, ...]) -> tuple[str, Hosted] | None:
        for size in self.sizes:
            for form in forms:
                hit = self.by_skeleton.get((size, skeleton(self._tail(form, size))))
                if hit is not None:
                    return "homograph", hit
        return None

    def _edit(self, forms: tuple[str, ...], max_distance: int) -> tuple[str, Hosted] | None:
        if max_distance <= 0:
            return None
        best = len(self.domains)
        for size in self.sizes:
            for form in forms:
                tail = self._tail(form, size)
                shape = skeleton(tail)
                grams, shape_grams = bigrams(tail), bigrams(shape)
                for order in sorted(self._near(size, len(tail), len(shape), max_distance)):
                    if order >= best:
                        break
                    h = self.domains[order]
                    allowed = 1 if len(h.name) < SHORT_DOMAIN else max_distance
                    if _close(tail, h.name, grams, h.grams, allowed) or \
                            _close(shape, h.skeleton, shape_grams, h.skeleton_grams, allowed):
                        best = order
        return None if best == len(self.domains) else ("edit", self.domains[best])

    def _near(self, size: int, length: int, shape: int, distance: int) -> set[int]:
        """The hosted domains of ``size`` labels whose length (or skeleton's) is within ``distance``:
        the only ones an edit distance can find."""
        near: set[int] = set()
        for delta in range(-distance, distance + 1):
            near.update(self.by_length.get((size, length + delta), ()))
            near.update(self.by_skeleton_length.get((size, shape + delta), ()))
        return near

    def _prefix(self, forms: tuple[str, ...]) -> tuple[str, Hosted] | None:
        for form in forms:
            labels = form.split(".")
            for size in self.sizes:
                hit = self.by_labels.get(tuple(labels[:size])) if len(labels) > size else None
                if hit is not None:
                    return "prefix", hit
        return None


def bigrams(text: str) -> frozenset[tuple[str, int]]:
    """The bigrams of ``text`` as a set of (bigram, occurrence number): the size of the
    intersection of two such sets is the size of the intersection of the bigram multisets."""
    seen: dict[str, int] = {}
    found = []
    for i in range(len(text) - 1):
        gram = text[i:i + 2]
        seen[gram] = seen.get(gram, 0) + 1
        found.append((gram, seen[gram]))
    return frozenset(found)


def _close(left: str, right: str, left_grams: frozenset[tuple[str, int]], right_grams: frozenset[tuple[str, int]],
           allowed: int) -> bool:
    """Whether ``left`` is 1 to ``allowed`` edits from ``right``. First the q-gram count filter
    (Ukkonen 1992, q = 2: each edit destroys at most two bigrams, a swap of neighbours three), which
    rejects most strangers for the price of a set intersection, then the distance itself."""
    if len(left_grams & right_grams) < max(len(left), len(right)) - 1 - 3 * allowed:
        return False
    return 1 <= osa_distance(left, right, allowed) <= allowed


def look_alike(domain: str, local: str, max_distance: int) -> str | None:
    """Why ``domain`` (as written) looks like the one hosted domain ``local``: "homograph", "edit",
    "prefix" or None (a convenience for single comparisons; the verdict uses :class:`HostedDomains`)."""
    found = HostedDomains.build([local]).look_alike(domain, max_distance)
    return None if found is None else found[0]
