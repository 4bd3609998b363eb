"""Imported hashes in Dovecot's ``{SCHEME}`` form and the lines of a passwd-file (auth/hash_import)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from hardmail.auth.hash_import import BadLine, HashLine, parse_hash_file, resolve_import
from hardmail.auth.hashing import verify_password
from hardmail.auth.legacy import UnknownHashFormat, scheme_of
from hardmail.config.schema import PasswordHashSection
from support.dovecot_hashes import KNOWN_PASSWORD, KNOWN_VECTORS, dovecot_hashes

PARAMS = PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "tr0ubadour and a horse"
FORMS = dovecot_hashes(PASSWORD)
EXPECTED_SCHEME = {
    "BLF-CRYPT": "bcrypt", "ARGON2ID": "argon2id", "ARGON2I": "argon2i", "SSHA512": "ssha512", "SSHA256": "ssha256",
    "SSHA": "ssha", "SMD5": "smd5", "SHA512": "sha512", "SHA256": "sha256", "SHA": "sha1", "PLAIN-MD5": "plain-md5",
}


@pytest.mark.parametrize("dovecot", sorted(FORMS))
def test_each_dovecot_scheme_verifies_its_password_only(dovecot: str) -> None:
    scheme, stored = resolve_import(None, FORMS[dovecot])
    assert scheme.name == EXPECTED_SCHEME[dovecot]
    result = verify_password(stored, PASSWORD, PARAMS)
    assert result.ok
    assert result.needs_rehash is (dovecot != "ARGON2ID")  # an Argon2id hash with our parameters is kept
    assert not verify_password(stored, PASSWORD + "!", PARAMS).ok


@pytest.mark.parametrize("dovecot", sorted(KNOWN_VECTORS))
def test_known_crypt_vectors_with_the_dovecot_prefix(dovecot: str) -> None:
    scheme, stored = resolve_import(None, f"{{{dovecot}}}{KNOWN_VECTORS[dovecot]}")
    assert stored == KNOWN_VECTORS[dovecot] and scheme.name == dovecot.lower()
    assert verify_password(stored, KNOWN_PASSWORD, PARAMS).ok and not verify_password(stored, "Hello", PARAMS).ok


def test_crypt_takes_the_scheme_from_the_modular_prefix_and_md5_means_md5_crypt() -> None:
    assert resolve_import(None, "{CRYPT}" + KNOWN_VECTORS["SHA512-CRYPT"])[0].name == "sha512-crypt"
    assert resolve_import(None, "{MD5}" + KNOWN_VECTORS["MD5-CRYPT"])[0].name == "md5-crypt"
    with pytest.raises(UnknownHashFormat, match="not DES crypt"):
        resolve_import(None, "{CRYPT}abJnggxhB/yWI")


def test_encoding_suffixes_of_the_digest_schemes() -> None:
    digest = hashlib.sha512(PASSWORD.encode()).hexdigest()
    _scheme, stored = resolve_import(None, "{SHA512.HEX}" + digest)
    assert stored == FORMS["SHA512"] and verify_password(stored, PASSWORD, PARAMS).ok
    md5 = hashlib.md5(PASSWORD.encode())
    stored = resolve_import(None, "{PLAIN-MD5.b64}" + base64.b64encode(md5.digest()).decode())[1]
    assert stored == "{PLAIN-MD5}" + md5.hexdigest() == FORMS["PLAIN-MD5"]
    with pytest.raises(UnknownHashFormat, match="encoding suffix"):
        resolve_import(None, "{SHA512-CRYPT.HEX}" + KNOWN_VECTORS["SHA512-CRYPT"])


def test_unknown_scheme_is_refused_with_the_accepted_ones() -> None:
    with pytest.raises(UnknownHashFormat) as refused:
        resolve_import(None, "{NTLM}8846f7eaee8fb117ad06bdd830b7586c")
    text = str(refused.value)
    assert text.startswith("unknown scheme {NTLM}; accepted: ")
    for accepted in ("{SHA512-CRYPT}", "{ARGON2ID}", "{BLF-CRYPT}", "{SSHA512}", "{PLAIN-MD5}"):
        assert accepted in text
    assert "8846f7" not in text


def test_scheme_named_and_prefix_must_agree_and_a_bare_hash_must_say_its_scheme() -> None:
    with pytest.raises(UnknownHashFormat, match="prefix says ssha512, but the scheme given is bcrypt"):
        resolve_import("bcrypt", FORMS["SSHA512"])
    assert resolve_import("ssha512", FORMS["SSHA512"])[0].name == "ssha512"
    assert resolve_import("ssha512", FORMS["SSHA512"].removeprefix("{SSHA512}"))[1] == FORMS["SSHA512"]
    assert resolve_import(None, KNOWN_VECTORS["SHA256-CRYPT"])[0].name == "sha256-crypt"
    with pytest.raises(UnknownHashFormat, match="does not say its scheme"):
        resolve_import(None, "5f4dcc3b5aa765d61d8327deb882cf99")


@pytest.mark.parametrize("text", [
    "{SSHA512}not base64!", "{SHA256}" + "QUJD", "{PLAIN-MD5}xyz",
    "{ARGON2ID}$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
    "{ARGON2ID}$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo", "{BLF-CRYPT}$6$x$y", "{SHA512-CRYPT}",
])
def test_malformed_hashes_are_refused_without_echoing_them(text: str) -> None:
    with pytest.raises(UnknownHashFormat) as refused:
        resolve_import(None, text)
    body = text.partition("}")[2]
    assert not body or body not in str(refused.value)


def test_imported_hashes_are_recognised_as_legacy_by_their_stored_prefix() -> None:
    for dovecot, text in FORMS.items():
        scheme, stored = resolve_import(None, text)
        found = scheme_of(stored)
        assert (found.name if found else None) == (None if dovecot.startswith("ARGON2") else scheme.name)


def test_passwd_file_and_user_hash_lines() -> None:
    text = ("# exported from dovecot\n\n"
            "alice@example.org:{SHA512-CRYPT}$6$s$h:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G\n"
            "  bob:{SSHA}abc  \n"
            "carol@example.org:$2y$05$x\n"
            "no colon here\n"
            ":{SHA}x\n"
            "dave@example.org::1000:1000\n")
    assert parse_hash_file(text) == [
        HashLine(3, "alice@example.org", "{SHA512-CRYPT}$6$s$h"),
        HashLine(4, "bob", "{SSHA}abc"),
        HashLine(5, "carol@example.org", "$2y$05$x"),
        BadLine(6, "not a user:hash line"),
        BadLine(7, "not a user:hash line"),
        BadLine(8, "no password hash"),
    ]
