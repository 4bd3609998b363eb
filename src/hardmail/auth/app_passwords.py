"""App passwords: generated (never chosen) secrets of 160 bits, each limited to some protocols.

They are shown once and stored as SHA-256 digests: a random 160-bit secret cannot be guessed, so
a slow hash would add nothing, and a digest lets the authenticator find the app password by
lookup instead of trying each one. The text is grouped by dashes for reading; dashes, spaces and
case do not matter when it is typed back.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime

from hardmail.store.ports_credentials import SCOPES, AppPassword

APP_PASSWORD_BYTES = 20  # 160 bits (the floor asked for is 128)
MAX_NAME_CHARS = 100


def new_app_password() -> str:
    """32 base32 characters in groups of four: ``abcd-efgh-...``."""
    text = base64.b32encode(secrets.token_bytes(APP_PASSWORD_BYTES)).decode("ascii").lower()
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def app_password_digest(text: str) -> str:
    cleaned = text.replace("-", "").replace(" ", "").strip().lower()
    return hashlib.sha256(cleaned.encode("utf-8", "surrogatepass")).hexdigest()


def parse_scopes(values: Iterable[str]) -> frozenset[str]:
    """Scopes from names like ``smtp``, ``imap,pop3``; raises ValueError naming what is allowed."""
    scopes = {part.strip().lower() for value in values for part in value.split(",") if part.strip()}
    unknown = sorted(scopes - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {', '.join(unknown)}; the scopes are {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"give at least one scope: {', '.join(SCOPES)}")
    return frozenset(scopes)


def usable_for(app_password: AppPassword, protocol: str, now: datetime) -> bool:
    """In scope for ``protocol`` and not expired."""
    if protocol not in app_password.scopes:
        return False
    return app_password.expires_at is None or now < app_password.expires_at
