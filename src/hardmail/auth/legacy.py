"""Legacy password hashes imported from other servers: recognising, checking and verifying them.

Each scheme is stored in the ``password_hash`` column in a self-describing form, so that
:mod:`hardmail.auth.hashing` picks its verifier by prefix: bcrypt (``$2a$``/``$2b$``/``$2y$``),
SHA-512-crypt (``$6$``), SHA-256-crypt (``$5$``), MD5-crypt (``$1$``) and PBKDF2 (``$pbkdf2-sha256$``,
``$pbkdf2-sha512$``, ``$pbkdf2$``) in their usual modular-crypt forms, and the LDAP/Dovecot digests
``{SSHA512}``, ``{SSHA256}``, ``{SSHA}``, ``{SMD5}`` and ``{SHA}`` (base64 of digest + salt) in
their own prefixed forms, verified by libpass (imported as ``passlib``). Three forms libpass has no
handler for are stored with a prefix of their own and checked by libpass's hex-digest handlers:
``{SHA512}``/``{SHA256}`` (Dovecot: base64 of the unsalted digest) and ``{PLAIN-MD5}`` (hex).
hMailServer's two formats carry no prefix of their own, so they are stored as ``{HMS2}`` + MD5 hex
(type 2) and ``{HMS3}`` + 6 hex digits of salt + SHA-256 hex of salt+password (type 3); those two
are a few lines of hashlib and are written here.

Argon2 hashes from another server (``argon2id``, ``argon2i``; :data:`NATIVE_IMPORTS`) are stored as
they are: :mod:`hardmail.auth.hashing` verifies them natively and re-hashes an argon2i one, or one
with other parameters than configured, at the first login.

A legacy hash always verifies with ``needs_rehash``: the first successful login replaces it with
Argon2id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import Type, extract_parameters
from argon2.exceptions import InvalidHashError
from passlib.exc import PasslibHashWarning
from passlib.hash import (
    bcrypt,
    hex_md5,
    hex_sha256,
    hex_sha512,
    ldap_salted_md5,
    ldap_salted_sha1,
    ldap_salted_sha256,
    ldap_salted_sha512,
    ldap_sha1,
    md5_crypt,
    pbkdf2_sha1,
    pbkdf2_sha256,
    pbkdf2_sha512,
    sha256_crypt,
    sha512_crypt,
)

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


def _prefixed(prefix: str, normalize: Callable[[str], str]) -> Callable[[str], str]:
    """Accept the hash with or without its ``{SCHEME}`` prefix; store it with the prefix."""
    def with_prefix(text: str) -> str:
        return normalize(text if text.upper().startswith(prefix) else prefix + text)

    return with_prefix


def _ldap_normalizer(handler: object, prefix: str) -> Callable[[str], str]:
    inner = _passlib_normalizer(handler)
    return _prefixed(prefix, lambda text: inner(prefix + text[len(prefix):]))


def _b64_digest(text: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != size:
        raise UnknownHashFormat(f"the hash is not the base64 form of a {size}-byte digest")
    return raw


def _unsalted_sha2(prefix: str, handler: object, size: int) -> tuple[Callable[[str, str], bool], Callable[[str], str]]:
    """Dovecot's ``{SHA256}``/``{SHA512}``: base64 of the unsalted digest, checked with libpass's hex handler."""
    def verify(stored: str, password: str) -> bool:
        digest = _b64_digest(stored[len(prefix):], size).hex()
        return bool(handler.verify(password, digest))  # type: ignore[attr-defined]

    def normalize(text: str) -> str:
        body = text[len(prefix):]
        _b64_digest(body, size)
        return prefix + body

    return verify, _prefixed(prefix, normalize)


PLAIN_MD5_PREFIX = "{PLAIN-MD5}"


def _verify_plain_md5(stored: str, password: str) -> bool:
    return bool(hex_md5.verify(password, stored[len(PLAIN_MD5_PREFIX):]))


def _normalize_plain_md5(text: str) -> str:
    body = text[len(PLAIN_MD5_PREFIX):]
    if not _HEX32.fullmatch(body):
        raise UnknownHashFormat("a PLAIN-MD5 hash is 32 hexadecimal digits")
    return PLAIN_MD5_PREFIX + body.lower()


_SHA256_VERIFY, _SHA256_NORMALIZE = _unsalted_sha2("{SHA256}", hex_sha256, 32)
_SHA512_VERIFY, _SHA512_NORMALIZE = _unsalted_sha2("{SHA512}", hex_sha512, 64)


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
    LegacyScheme("md5-crypt", ("$1$",), _passlib_verifier(md5_crypt), _passlib_normalizer(md5_crypt), "$1$salt$..."),
    LegacyScheme("ssha512", ("{SSHA512}",), _passlib_verifier(ldap_salted_sha512),
                 _ldap_normalizer(ldap_salted_sha512, "{SSHA512}"), "{SSHA512}base64(digest+salt)"),
    LegacyScheme("ssha256", ("{SSHA256}",), _passlib_verifier(ldap_salted_sha256),
                 _ldap_normalizer(ldap_salted_sha256, "{SSHA256}"), "{SSHA256}base64(digest+salt)"),
    LegacyScheme("ssha", ("{SSHA}",), _passlib_verifier(ldap_salted_sha1),
                 _ldap_normalizer(ldap_salted_sha1, "{SSHA}"), "{SSHA}base64(digest+salt)"),
    LegacyScheme("smd5", ("{SMD5}",), _passlib_verifier(ldap_salted_md5),
                 _ldap_normalizer(ldap_salted_md5, "{SMD5}"), "{SMD5}base64(digest+salt)"),
    LegacyScheme("sha1", ("{SHA}",), _passlib_verifier(ldap_sha1), _ldap_normalizer(ldap_sha1, "{SHA}"),
                 "{SHA}base64(digest)"),
    LegacyScheme("sha256", ("{SHA256}",), _SHA256_VERIFY, _SHA256_NORMALIZE, "{SHA256}base64(digest)"),
    LegacyScheme("sha512", ("{SHA512}",), _SHA512_VERIFY, _SHA512_NORMALIZE, "{SHA512}base64(digest)"),
    LegacyScheme("plain-md5", (PLAIN_MD5_PREFIX,), _verify_plain_md5, _prefixed(PLAIN_MD5_PREFIX, _normalize_plain_md5),
                 "32 hex digits"),
)

# Bounds on an imported Argon2 hash's cost: each login computes it once in the hashing pool.
MAX_IMPORTED_ARGON2 = {"memory_cost": 1024 * 1024, "time_cost": 32, "parallelism": 16}  # KiB, passes, lanes
_ARGON2_FORM = re.compile(r"\$argon2(id|i)\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")


def _argon2_normalizer(kind: Type) -> Callable[[str], str]:
    def normalize(text: str) -> str:
        try:
            params = extract_parameters(text) if _ARGON2_FORM.fullmatch(text) else None
        except (InvalidHashError, ValueError):
            params = None
        if params is None or params.type is not kind:
            raise UnknownHashFormat(f"the hash is not an {kind.name.lower()} PHC string ($argon2..$v=19$m=,t=,p=$...)")
        if any(getattr(params, name) > bound for name, bound in MAX_IMPORTED_ARGON2.items()):
            raise UnknownHashFormat("its Argon2 parameters are beyond what this server computes at a login "
                                    f"(at most m={MAX_IMPORTED_ARGON2['memory_cost']}, "
                                    f"t={MAX_IMPORTED_ARGON2['time_cost']}, p={MAX_IMPORTED_ARGON2['parallelism']})")
        return text

    return normalize


@dataclass(frozen=True, slots=True)
class NativeImport:
    """An importable hash that :mod:`hardmail.auth.hashing` verifies itself (no legacy verifier)."""

    name: str
    prefixes: tuple[str, ...]
    normalize: Callable[[str], str]
    example: str


NATIVE_IMPORTS: tuple[NativeImport, ...] = (
    NativeImport("argon2id", ("$argon2id$",), _argon2_normalizer(Type.ID), "$argon2id$v=19$m=65536,t=3,p=1$..."),
    NativeImport("argon2i", ("$argon2i$",), _argon2_normalizer(Type.I), "$argon2i$v=19$m=65536,t=3,p=1$..."),
)

ImportScheme = LegacyScheme | NativeImport
IMPORT_SCHEMES: tuple[ImportScheme, ...] = (*LEGACY_SCHEMES, *NATIVE_IMPORTS)
SCHEME_NAMES: tuple[str, ...] = tuple(scheme.name for scheme in IMPORT_SCHEMES)


def scheme_named(name: str) -> ImportScheme | None:
    wanted = name.strip().lower()
    return next((scheme for scheme in IMPORT_SCHEMES if scheme.name == wanted), None)


def scheme_by_form(text: str) -> ImportScheme | None:
    """The importable scheme a hash announces by its own prefix (``$6$``, ``{SSHA512}``, ``$argon2id$``, ...)."""
    upper = text.upper()
    return next((scheme for scheme in IMPORT_SCHEMES
                 if any(upper.startswith(prefix.upper()) for prefix in scheme.prefixes)), None)


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
