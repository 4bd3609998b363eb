"""Shared fixtures for the delivery tests: a Maildir store and an outbound spool in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hardmail.delivery.maildir import MaildirStore
from hardmail.delivery.spool import OutboundSpool

SAMPLE_MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"\r\n"
    b"Hi Bob,\r\n"
    b"\xc3\xa9 8-bit line and a trailing one.\r\n"
)


@pytest.fixture
def sample_message() -> bytes:
    return SAMPLE_MESSAGE


@pytest.fixture
def maildir_root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def store(maildir_root: Path) -> MaildirStore:
    return MaildirStore(maildir_root, "mx.example.org")


@pytest.fixture
def spool(tmp_path: Path) -> OutboundSpool:
    return OutboundSpool(tmp_path / "spool")


def files_in(directory: Path) -> list[Path]:
    """Regular files directly inside ``directory`` (empty when it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.iterdir() if path.is_file())


@pytest.fixture
def list_files():
    return files_in
