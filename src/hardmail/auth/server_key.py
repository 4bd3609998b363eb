"""The server's secret key: one random Fernet key in ``<data_dir>/server.key`` (mode 0600).

It encrypts secrets the server must be able to read back (outbound route passwords, TOTP seeds).
The file is created on first use, durably and without ever replacing an existing key: two
processes starting at once end up with the same key. A key file readable by group or others, or
one that is not a valid key, is refused rather than silently used or replaced (replacing it would
make every stored secret unreadable).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet

from hardmail.delivery.durable import fsync_dir, make_private_dir, remove_quietly, write_new_file

KEY_FILE_NAME = "server.key"


class ServerKeyError(Exception):
    """The key file is unusable; the text says what is wrong and what to do (never the key)."""


def server_key_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE_NAME


def load_or_create_server_key(data_dir: Path) -> bytes:
    """The server key (url-safe base64, as ``cryptography.fernet.Fernet`` takes it); made on first use."""
    path = server_key_path(data_dir)
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def server_fernet(data_dir: Path) -> Fernet:
    """A Fernet built on the server key, for encrypting secrets at rest."""
    return Fernet(load_or_create_server_key(data_dir))


def _create_key_file(path: Path) -> None:
    """Write a new key to a temporary name, then link it into place unless another process won."""
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    remove_quietly(tmp)
    write_new_file(tmp, Fernet.generate_key() + b"\n", mode=0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # created concurrently: the existing key wins
    finally:
        remove_quietly(tmp)
    fsync_dir(path.parent)


def _read_key_file(path: Path) -> bytes:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerKeyError(
            f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )
    key = path.read_bytes().strip()
    try:
        Fernet(key)
    except ValueError:
        raise ServerKeyError(
            f"{path} does not hold a valid server key; restore it from a backup "
            "(secrets encrypted with the old key cannot be read without it)"
        ) from None
    return key
