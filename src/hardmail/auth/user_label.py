"""How a user name someone tried appears in logs, login history and failure records.

An existing account (or alias) appears as its address. Any other name appears as
``~h:<12 hex>``, an HMAC-SHA256 of the normalised name under a key derived from the server key:
people type their password into the user name field, and that text must never reach a log file.
The label is stable (same name, same label, across restarts), so attempts with one name still
correlate, and it cannot be reversed or checked against a guess without the server key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from pathlib import Path

from hardmail.auth.server_key import ServerKeyError, load_or_create_server_key
from hardmail.core.address import AddressError, parse_address_arg

LABEL_PREFIX = "~h:"
_PURPOSE = b"hardmail user-name label v1"


@functools.lru_cache(maxsize=4)
def label_key(data_dir: Path | None) -> bytes:
    """The labelling key of a data directory (derived from its server key); without one, a
    random key for this process (labels then correlate only within it)."""
    if data_dir is None:
        return _process_key()
    try:
        server_key = load_or_create_server_key(data_dir)
    except (ServerKeyError, OSError):
        return _process_key()
    return hmac.new(server_key, _PURPOSE, hashlib.sha256).digest()


@functools.lru_cache(maxsize=1)
def _process_key() -> bytes:
    return secrets.token_bytes(32)


def normalised_name(name: str) -> str:
    """The account key of an address; any other text trimmed and case-folded."""
    try:
        return parse_address_arg(name).key
    except AddressError:
        return name.strip().casefold()


def hashed_label(name: str, key: bytes) -> str:
    """``~h:`` and the first 12 hex digits of HMAC-SHA256(key, normalised name)."""
    digest = hmac.new(key, normalised_name(name).encode("utf-8", "surrogatepass"), hashlib.sha256)
    return LABEL_PREFIX + digest.hexdigest()[:12]


def is_label(text: str) -> bool:
    return text.startswith(LABEL_PREFIX)
