"""What an imported password hash means, and the files many come in.

A hash is named by ``--scheme`` (:data:`hardmail.auth.legacy.SCHEME_NAMES`), by Dovecot's
``{SCHEME}`` prefix (``{SHA512-CRYPT}$6$...``, ``{SSHA512}base64``, ...; :data:`DOVECOT_SCHEMES`,
with the ``.HEX``/``.B64`` encoding suffixes of the digest schemes), or by its own modular-crypt
form (``$6$``, ``$2y$``, ``$argon2id$``, ...). :func:`resolve_import` turns any of them into
(scheme, stored form) or raises :class:`UnknownHashFormat` saying what is accepted; no message
ever contains the hash. :func:`parse_hash_file` reads Dovecot passwd-file lines
(``user:{SCHEME}hash:uid:gid:gecos:home:shell:extra``, of which only the user and the password
are used) and plain ``user:hash`` lines; ``#`` comments and blank lines are skipped.
Pure functions: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from hardmail.auth.legacy import SCHEME_NAMES, ImportScheme, UnknownHashFormat, scheme_by_form, scheme_named

# Dovecot's scheme names (doc.dovecot.org, "Password schemes") -> ours. CRYPT is whatever its
# modular-crypt prefix says; MD5 is Dovecot's old name of MD5-CRYPT (not LDAP's base64 MD5).
DOVECOT_SCHEMES: dict[str, str] = {
    "SHA512-CRYPT": "sha512-crypt", "SHA256-CRYPT": "sha256-crypt", "BLF-CRYPT": "bcrypt",
    "MD5-CRYPT": "md5-crypt", "MD5": "md5-crypt", "CRYPT": "",
    "ARGON2ID": "argon2id", "ARGON2I": "argon2i",
    "SSHA512": "ssha512", "SSHA256": "ssha256", "SSHA": "ssha", "SMD5": "smd5",
    "SHA512": "sha512", "SHA256": "sha256", "SHA": "sha1", "SHA1": "sha1", "PLAIN-MD5": "plain-md5",
}
_CRYPT_SCHEMES = ("sha512-crypt", "sha256-crypt", "bcrypt", "md5-crypt")
_BASE64_DIGESTS = ("ssha512", "ssha256", "ssha", "smd5", "sha512", "sha256", "sha1")  # stored as base64
_HEX_DIGESTS = ("plain-md5",)  # stored as hex
ACCEPTED_PREFIXES = ", ".join(f"{{{name}}}" for name in DOVECOT_SCHEMES)
# Dovecot's schemes that store the password itself: not a hash to import (see UnsupportedScheme).
PLAINTEXT_SCHEMES = frozenset({"PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRIM"})


class UnsupportedScheme(UnknownHashFormat):
    """A ``{SCHEME}`` prefix that hardmail does not import; ``plaintext`` when it holds the
    password itself ({PLAIN}, {CLEAR}), which is set as a new password instead."""

    def __init__(self, message: str, plaintext: bool) -> None:
        super().__init__(message)
        self.plaintext = plaintext


def split_prefix(text: str) -> tuple[str, str] | None:
    """(``SCHEME``, rest) of ``{SCHEME}rest``, or None when the text has no such prefix."""
    if not text.startswith("{"):
        return None
    name, brace, rest = text[1:].partition("}")
    return (name.strip().upper(), rest) if brace and name.strip() else None


def _reencode(scheme: str, encoding: str, body: str) -> str:
    """Dovecot's ``{SCHEME.HEX}``/``{SCHEME.B64}`` into the encoding the scheme is stored in."""
    wanted = "b64" if scheme in _BASE64_DIGESTS else "hex" if scheme in _HEX_DIGESTS else ""
    given = {"HEX": "hex", "B64": "b64", "BASE64": "b64"}.get(encoding, "?")
    if not wanted or given == "?":
        raise UnknownHashFormat(f"the encoding suffix .{encoding} is not accepted for this scheme")
    if given == wanted:
        return body
    try:
        raw = bytes.fromhex(body) if given == "hex" else base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise UnknownHashFormat(f"the hash is not in the .{encoding} encoding its prefix says") from None
    return base64.b64encode(raw).decode() if wanted == "b64" else raw.hex()


def _from_prefix(name: str, body: str) -> tuple[ImportScheme, str]:
    base, _, encoding = name.partition(".")
    ours = DOVECOT_SCHEMES.get(base)
    if base in PLAINTEXT_SCHEMES:
        raise UnsupportedScheme(f"{{{name}}} holds the password itself, not a hash", plaintext=True)
    if ours is None:
        raise UnsupportedScheme(f"unknown scheme {{{name}}}; accepted: {ACCEPTED_PREFIXES}", plaintext=False)
    if not ours:  # {CRYPT}: the modular-crypt prefix decides
        found = scheme_by_form(body)
        if found is None or found.name not in _CRYPT_SCHEMES:
            raise UnknownHashFormat("{CRYPT} is accepted for $1$, $5$, $6$ and $2y$ hashes only (not DES crypt)")
        return found, body
    scheme = scheme_named(ours)
    assert scheme is not None, ours
    return scheme, _reencode(ours, encoding, body) if encoding else body


def resolve_import(scheme_name: str | None, text: str) -> tuple[ImportScheme, str]:
    """(scheme, stored form) of an imported hash; raises UnknownHashFormat."""
    text = text.strip()
    named = scheme_named(scheme_name) if scheme_name else None
    if scheme_name and named is None:
        raise UnknownHashFormat(f"unknown scheme {scheme_name.strip()!r}; known: {', '.join(SCHEME_NAMES)}")
    prefixed = split_prefix(text)
    if prefixed is not None:
        scheme, body = _from_prefix(*prefixed)
        if named is not None and named.name != scheme.name:
            raise UnknownHashFormat(f"the hash's prefix says {scheme.name}, but the scheme given is {named.name}")
    else:
        found = named or scheme_by_form(text)
        if found is None:
            raise UnknownHashFormat("the hash does not say its scheme: give it with Dovecot's {SCHEME} prefix "
                                    f"({ACCEPTED_PREFIXES}) or name the scheme ({', '.join(SCHEME_NAMES)})")
        scheme, body = found, text
    return scheme, scheme.normalize(body)


@dataclass(frozen=True, slots=True)
class HashLine:
    number: int  # 1-based line number in the file
    user: str
    password: str  # the hash text, as in the file


@dataclass(frozen=True, slots=True)
class BadLine:
    number: int
    reason: str


def parse_hash_file(text: str) -> list[HashLine | BadLine]:
    """The lines of a Dovecot passwd-file or a ``user:hash`` file, in order; comments and blank
    lines are left out. A line is ``user:password[:anything else]``."""
    entries: list[HashLine | BadLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        password = rest.split(":", 1)[0].strip()
        if not colon or not user.strip():
            entries.append(BadLine(number, "not a user:hash line"))
        elif not password:
            entries.append(BadLine(number, "no password hash"))
        else:
            entries.append(HashLine(number, user.strip(), password))
    return entries
