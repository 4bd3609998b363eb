"""Legacy hash formats with known vectors: recognised on import, verified, always re-hashed."""

from __future__ import annotations

import hashlib
from base64 import b64encode

import pytest

from hardmail.auth.hashing import verify_password
from hardmail.auth.legacy import UnknownHashFormat, normalize_import, scheme_of
from hardmail.config.schema import PasswordHashSection


def _ab64(raw: bytes) -> str:
    """passlib's "adapted base64": '.' instead of '+', no padding."""
    return b64encode(raw).decode().replace("+", ".").rstrip("=")


# hMailServer type 3, by hand: 6 hex digits of salt, then hex SHA-256 of salt + password.
HMS3_SALT = "a1b2c3"
HMS3 = HMS3_SALT + hashlib.sha256((HMS3_SALT + "hmail secret").encode()).hexdigest()
# RFC 6070 2: PBKDF2-HMAC-SHA1("password", "salt", 1, 20).
RFC6070 = bytes.fromhex("0c60c80f961f0e71f3a9b524af6012062fe037a6")
# RFC 7914 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64); its first 32 bytes are the 32-byte key.
RFC7914 = bytes.fromhex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc")

VECTORS = [
    # scheme, hash as exported, password
    ("hmailserver2", "5F4DCC3B5AA765D61D8327DEB882CF99", "password"),  # MD5("password")
    ("hmailserver3", HMS3, "hmail secret"),
    ("bcrypt", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"),  # OpenBSD test vector
    # Drepper's SHA-crypt specification examples
    ("sha512-crypt", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBF"
     "dcbYEdFCoEOfaS35inz1", "Hello world!"),
    ("sha256-crypt", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"),
    ("pbkdf2-sha1", f"$pbkdf2$1${_ab64(b'salt')}${_ab64(RFC6070)}", "password"),
    ("pbkdf2-sha256", f"$pbkdf2-sha256$1${_ab64(b'salt')}${_ab64(RFC7914)}", "passwd"),
]
PARAMS = PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.mark.parametrize(("scheme", "exported", "password"), VECTORS, ids=[v[0] for v in VECTORS])
def test_known_vector_verifies_and_asks_for_rehash(scheme: str, exported: str, password: str) -> None:
    stored = normalize_import(scheme, exported)
    found = scheme_of(stored)
    assert found is not None and found.name == scheme
    result = verify_password(stored, password, PARAMS)
    assert (result.ok, result.needs_rehash) == (True, True)


@pytest.mark.parametrize(("scheme", "exported", "password"), VECTORS, ids=[v[0] for v in VECTORS])
def test_wrong_password_is_refused(scheme: str, exported: str, password: str) -> None:
    assert not verify_password(normalize_import(scheme, exported), password + "x", PARAMS).ok


def test_hmailserver_hashes_are_stored_with_a_prefix_in_lower_case() -> None:
    assert normalize_import("hmailserver2", "5F4DCC3B5AA765D61D8327DEB882CF99") == (
        "{HMS2}5f4dcc3b5aa765d61d8327deb882cf99")
    assert normalize_import("HMailServer3", HMS3).startswith("{HMS3}a1b2c3")


@pytest.mark.parametrize(
    ("scheme", "text", "message"),
    [
        ("hmailserver2", "5f4dcc3b", "32 hexadecimal digits"),
        ("hmailserver3", "zz" * 35, "70 hexadecimal digits"),
        ("bcrypt", "$6$saltstring$abc", "modular-crypt form"),
        ("md4", "abc", "unknown scheme 'md4'"),
    ],
)
def test_import_refuses_what_is_not_of_the_scheme(scheme: str, text: str, message: str) -> None:
    with pytest.raises(UnknownHashFormat) as refused:
        normalize_import(scheme, text)
    assert message in str(refused.value) and text not in str(refused.value)
