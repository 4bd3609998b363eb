"""TOTP second factor (RFC 6238 with pyotp) and one-time recovery codes.

Codes are 6 digits over 30-second steps; a code of the step before or after the current one is
accepted too (RFC 6238 5.2 clock drift). The caller records the step a code matched and refuses
any step not newer than the last one used, so each code works once. The secret is kept encrypted
with the server key (Fernet); recovery codes are kept as SHA-256 digests (80 random bits each, so a
fast digest leaves nothing to guess).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pyotp
from cryptography.fernet import Fernet, InvalidToken

STEP_SECONDS = 30  # RFC 6238 5.2
DIGITS = 6
ALLOWED_DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_BYTES = 10  # 80 bits: 16 base32 characters


class SecretUnreadable(Exception):
    """The stored TOTP secret cannot be decrypted with this server key (it was replaced)."""


def new_totp_secret() -> str:
    """A fresh base32 secret of 160 bits (RFC 4226 4 recommends 160)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, address: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=address, issuer_name=issuer
    )


def time_step(now: float) -> int:
    return int(now // STEP_SECONDS)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to (current one ± 1), or None when it matches none."""
    cleaned = code.replace(" ", "").strip()
    if len(cleaned) != DIGITS or not cleaned.isdigit():
        return None
    current = time_step(now)
    found = None
    for step in range(current - ALLOWED_DRIFT_STEPS, current + ALLOWED_DRIFT_STEPS + 1):
        if hmac.compare_digest(code_at(secret, step), cleaned):  # compare every step: no early exit
            found = step
    return found


def encrypt_secret(secret: str, server_key: bytes) -> str:
    return Fernet(server_key).encrypt(secret.encode("ascii")).decode("ascii")


def decrypt_secret(token: str, server_key: bytes) -> str:
    try:
        return Fernet(server_key).decrypt(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError):
        raise SecretUnreadable("the TOTP secret cannot be decrypted with the server key") from None


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` codes like ``abcd-efgh-ijkl-mnop``."""
    return [_grouped(base64.b32encode(secrets.token_bytes(RECOVERY_CODE_BYTES)).decode("ascii").lower())
            for _ in range(count)]


def _grouped(text: str, size: int = 4) -> str:
    return "-".join(text[i:i + size] for i in range(0, len(text), size))


def recovery_code_digest(code: str) -> str:
    """SHA-256 hex of the code without dashes or spaces, in lower case."""
    cleaned = code.replace("-", "").replace(" ", "").strip().lower()
    return hashlib.sha256(cleaned.encode("utf-8")).hexdigest()
