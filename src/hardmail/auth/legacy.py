"""Legacy password hashes imported from other servers: recognising, checking and verifying them.

Each scheme is stored in the ``password_hash`` column in a self-describing form, so that
:mod:`hardmail.auth.hashing` picks its verifier by prefix: bcrypt (``$2a$``/``$2b$``/``$2y$``),
SHA-512-crypt (``$6$``), SHA-256-crypt (``$5$``) and PBKDF2 (``$pbkdf2-sha256$``,
``$pbkdf2-sha512$``, ``$pbkdf2$``) in their usual modular-crypt forms, verified by libpass
(imported as ``passlib``). hMailServer's two formats carry no prefix of their own, so they are
stored as ``{HMS2}`` + MD5 hex (type 2) and ``{HMS3}`` + 6 hex digits of salt + SHA-256 hex of
salt+password (type 3); those two are a few lines of hashlib and are written here.

A legacy hash always verifies with ``needs_rehash``: the first successful login replaces it with
Argon2id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from passlib.exc import PasslibHashWarning
from passlib.hash import bcrypt, pbkdf2_sha1, pbkdf2_sha256, pbkdf2_sha512, sha256_crypt, sha512_crypt

HMS2_PREFIX = "{HMS2}"
HMS3_PREFIX = "{HMS3}"
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX70 = re.compile(r"[0-9a-fA-F]{70}")
HMS3_SALT_CHARS = 6

# A malformed imported hash fails its login; libpass's warning about it would only add noise.
warnings.filterwarnings("ignore", category=PasslibHashWarning)


class UnknownHashFormat(ValueError):
    """The text is not a hash of the named scheme; the message says what was expected (never the hash)."""


def _verify_hms2(stored: str, password: str) -> bool:
    digest = hashlib.md5(password.encode("utf-8"), usedforsecurity=False).hexdigest()
    return hmac.compare_digest(digest, stored[len(HMS2_PREFIX):].lower())


def _verify_hms3(stored: str, password: str) -> bool:
    value = stored[len(HMS3_PREFIX):].lower()
    salt, expected = value[:HMS3_SALT_CHARS], value[HMS3_SALT_CHARS:]
    digest = hashlib.sha256((salt + password).encode("utf-8")).hexdigest()
    return hmac.compare_digest(digest, expected)


def _passlib_verifier(handler: object) -> Callable[[str, str], bool]:
    def verify(stored: str, password: str) -> bool:
        return bool(handler.verify(password, stored))  # type: ignore[attr-defined]

    return verify


def _passlib_normalizer(handler: object) -> Callable[[str], str]:
    def normalize(text: str) -> str:
        if not handler.identify(text):  # type: ignore[attr-defined]
            raise UnknownHashFormat("the hash is not in this scheme's modular-crypt form")
        try:
            handler.from_string(text)  # type: ignore[attr-defined]  # parses every field, not just the prefix
        except (ValueError, TypeError):
            raise UnknownHashFormat("the hash has this scheme's prefix but its fields are malformed") from None
        return text

    return normalize


def _normalize_hms2(text: str) -> str:
    if not _HEX32.fullmatch(text):
        raise UnknownHashFormat("an hMailServer type 2 hash is 32 hexadecimal digits (MD5)")
    return HMS2_PREFIX + text.lower()


def _normalize_hms3(text: str) -> str:
    if not _HEX70.fullmatch(text):
        raise UnknownHashFormat(
            "an hMailServer type 3 hash is 70 hexadecimal digits (6 of salt, then SHA-256)"
        )
    return HMS3_PREFIX + text.lower()


@dataclass(frozen=True, slots=True)
class LegacyScheme:
    name: str  # as given to ``hardmail account import-hash --scheme``
    prefixes: tuple[str, ...]  # how a stored hash of this scheme begins
    verify: Callable[[str, str], bool]  # (stored hash, password) -> matches
    normalize: Callable[[str], str]  # imported text -> stored form; raises UnknownHashFormat
    example: str  # the form shown when an import is refused


LEGACY_SCHEMES: tuple[LegacyScheme, ...] = (
    LegacyScheme("hmailserver2", (HMS2_PREFIX,), _verify_hms2, _normalize_hms2, "32 hex digits"),
    LegacyScheme("hmailserver3", (HMS3_PREFIX,), _verify_hms3, _normalize_hms3, "70 hex digits"),
    LegacyScheme("bcrypt", ("$2a$", "$2b$", "$2y$"), _passlib_verifier(bcrypt),
                 _passlib_normalizer(bcrypt), "$2b$12$..."),
    LegacyScheme("sha512-crypt", ("$6$",), _passlib_verifier(sha512_crypt),
                 _passlib_normalizer(sha512_crypt), "$6$salt$..."),
    LegacyScheme("sha256-crypt", ("$5$",), _passlib_verifier(sha256_crypt),
                 _passlib_normalizer(sha256_crypt), "$5$salt$..."),
    LegacyScheme("pbkdf2-sha256", ("$pbkdf2-sha256$",), _passlib_verifier(pbkdf2_sha256),
                 _passlib_normalizer(pbkdf2_sha256), "$pbkdf2-sha256$rounds$salt$checksum"),
    LegacyScheme("pbkdf2-sha512", ("$pbkdf2-sha512$",), _passlib_verifier(pbkdf2_sha512),
                 _passlib_normalizer(pbkdf2_sha512), "$pbkdf2-sha512$rounds$salt$checksum"),
    LegacyScheme("pbkdf2-sha1", ("$pbkdf2$",), _passlib_verifier(pbkdf2_sha1),
                 _passlib_normalizer(pbkdf2_sha1), "$pbkdf2$rounds$salt$checksum"),
)

SCHEME_NAMES: tuple[str, ...] = tuple(scheme.name for scheme in LEGACY_SCHEMES)


def scheme_named(name: str) -> LegacyScheme | None:
    wanted = name.strip().lower()
    return next((scheme for scheme in LEGACY_SCHEMES if scheme.name == wanted), None)


def scheme_of(stored_hash: str) -> LegacyScheme | None:
    """The legacy scheme of a stored hash, or None (Argon2 or unknown)."""
    for scheme in LEGACY_SCHEMES:
        if stored_hash.startswith(scheme.prefixes):
            return scheme
    return None


def normalize_import(scheme_name: str, text: str) -> str:
    """The stored form of an imported hash; raises UnknownHashFormat (unknown scheme or bad form)."""
    scheme = scheme_named(scheme_name)
    if scheme is None:
        raise UnknownHashFormat(f"unknown scheme {scheme_name!r}; known: {', '.join(SCHEME_NAMES)}")
    return scheme.normalize(text.strip())
