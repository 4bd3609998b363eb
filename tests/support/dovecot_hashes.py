"""Password hashes in Dovecot's ``{SCHEME}`` form, made for a given password with tools other than
the libpass handlers that verify them (hashlib, bcrypt, argon2-cffi, known vectors), so that an
import test checks the format, not libpass against itself."""

from __future__ import annotations

import base64
import hashlib

import bcrypt
from argon2 import PasswordHasher, Type

SALT = b"\x01\x02salt\xfe\xff"  # 8 bytes, as Dovecot's SSHA* use
# Drepper's SHA-crypt examples and OpenSSL's `openssl passwd -1 -salt saltstri`: password "Hello world!"
KNOWN_VECTORS = {
    "SHA512-CRYPT": "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBF"
                    "dcbYEdFCoEOfaS35inz1",
    "SHA256-CRYPT": "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
    "MD5-CRYPT": "$1$saltstri$YMyguxXMBpd2TEZ.vS/3q1",
}
KNOWN_PASSWORD = "Hello world!"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _salted(name: str, password: str) -> str:
    return _b64(hashlib.new(name, password.encode() + SALT).digest() + SALT)


def dovecot_hashes(password: str) -> dict[str, str]:
    """Dovecot scheme -> ``{SCHEME}hash`` of ``password``, for every scheme hardmail imports."""
    cheap_argon2 = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}
    blowfish = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    forms = {
        "BLF-CRYPT": blowfish,
        "ARGON2ID": PasswordHasher(**cheap_argon2, type=Type.ID).hash(password),
        "ARGON2I": PasswordHasher(**cheap_argon2, type=Type.I).hash(password),
        "SSHA512": _salted("sha512", password),
        "SSHA256": _salted("sha256", password),
        "SSHA": _salted("sha1", password),
        "SMD5": _salted("md5", password),
        "SHA512": _b64(hashlib.sha512(password.encode()).digest()),
        "SHA256": _b64(hashlib.sha256(password.encode()).digest()),
        "SHA": _b64(hashlib.sha1(password.encode()).digest()),
        "PLAIN-MD5": hashlib.md5(password.encode()).hexdigest(),
    }
    return {scheme: f"{{{scheme}}}{text}" for scheme, text in forms.items()}
