"""What an admin types for mailbox commands: sizes (``1G``, ``500M``), special uses (``Sent``)."""

from __future__ import annotations

import pytest

from hardmail.admin.mailbox_service import human_size, parse_size, special_use_arg
from hardmail.admin.service import AdminError


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("1K", 1024), ("64k", 65536), ("500M", 500 * 1024**2),
                                            ("1G", 1024**3), ("1.5G", 3 * 1024**3 // 2), ("2GiB", 2 * 1024**3),
                                            ("10 MB", 10 * 1024**2), ("1T", 1024**4)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1X", "-5", "1 G B", "ten"])
def test_bad_sizes_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                            (500 * 1024**2, "500.0 MiB"), (10 * 1024**3, "10.0 GiB"),
                                            (3 * 1024**4, "3.0 TiB")])
def test_human_sizes(size: int, text: str) -> None:
    assert human_size(size) == text


def test_special_use_with_or_without_backslash() -> None:
    assert special_use_arg("Sent") == "\\Sent"
    assert special_use_arg("\\junk") == "\\Junk"
    with pytest.raises(AdminError, match="not a special use"):
        special_use_arg("\\Spam")
