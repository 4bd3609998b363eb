"""The password rule: 12 characters or more, 1,024 bytes or fewer, not the account's name."""

from __future__ import annotations

import pytest

from hardmail.admin.service import check_password_strength


@pytest.mark.parametrize(
    "password",
    ["twelve chars", "correct horse battery staple", "ünïcödé-pässwörd", "x" * 1024],
)
def test_acceptable_passwords(password: str) -> None:
    assert check_password_strength(password, "alice@example.org") is None


def test_short_password_is_refused() -> None:
    reason = check_password_strength("eleven char", "alice@example.org")
    assert reason is not None and "12 characters" in reason


def test_twelve_multibyte_characters_are_enough() -> None:
    assert check_password_strength("é" * 12, "alice@example.org") is None


def test_password_over_1024_bytes_is_refused() -> None:
    reason = check_password_strength("é" * 513, "alice@example.org")
    assert reason is not None and "1024 bytes" in reason


@pytest.mark.parametrize("password", ["alice-is-the-best", "my ALICE password", "xxALICExxxxx"])
def test_password_containing_the_local_part_is_refused(password: str) -> None:
    reason = check_password_strength(password, "alice@example.org")
    assert reason is not None and "name" in reason


def test_very_short_local_parts_are_not_searched_for() -> None:
    assert check_password_strength("a strong passphrase", "a@example.org") is None


def test_unpaired_surrogate_is_refused_not_raised() -> None:
    assert check_password_strength("\udcff" * 20, "alice@example.org") is not None


def test_reason_never_contains_the_password() -> None:
    password = "alice-secret-value"
    reason = check_password_strength(password, "alice@example.org")
    assert reason is not None and password not in reason
