"""The server key file: created once with mode 0600, stable afterwards, refused when unsafe."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hardmail.auth.server_key import (
    ServerKeyError,
    load_or_create_server_key,
    server_fernet,
    server_key_path,
)


def test_first_use_creates_a_private_key_file(tmp_path: Path) -> None:
    key = load_or_create_server_key(tmp_path / "data")
    path = server_key_path(tmp_path / "data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"


def test_the_key_is_stable_across_calls(tmp_path: Path) -> None:
    assert load_or_create_server_key(tmp_path) == load_or_create_server_key(tmp_path)


def test_secrets_encrypted_with_the_key_are_readable_later(tmp_path: Path) -> None:
    token = server_fernet(tmp_path).encrypt(b"route password")
    assert server_fernet(tmp_path).decrypt(token) == b"route password"


def test_a_group_readable_key_file_is_refused(tmp_path: Path) -> None:
    load_or_create_server_key(tmp_path)
    server_key_path(tmp_path).chmod(0o640)
    with pytest.raises(ServerKeyError, match="chmod 600"):
        load_or_create_server_key(tmp_path)


def test_a_damaged_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    path = server_key_path(tmp_path)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(ServerKeyError, match="valid server key") as caught:
        load_or_create_server_key(tmp_path)
    assert "not a key" not in str(caught.value)
    assert path.read_bytes() == b"not a key"
