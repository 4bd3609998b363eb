"""Cheap Argon2 parameters so that the unit tests run quickly."""

from __future__ import annotations

import pytest

from hardmail.config.schema import PasswordHashSection


@pytest.fixture
def params() -> PasswordHashSection:
    return PasswordHashSection(time_cost=1, memory_cost=8192, parallelism=1, hash_workers=1)
