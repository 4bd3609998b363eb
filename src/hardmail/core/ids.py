"""Identifiers for sessions and messages: short, unique, time-sortable, safe in file names."""

from __future__ import annotations

import base64
import secrets
import time

_ALPHABET_TRANSLATION = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def new_id(now: float | None = None) -> str:
    """16 characters of Crockford base32: 48 bits of milliseconds then 32 random bits."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    raw = millis.to_bytes(6, "big") + secrets.token_bytes(4)
    return base64.b32encode(raw).translate(_ALPHABET_TRANSLATION).decode("ascii")[:16]
